//! Transcribes speech synthesised by espeak-ng with the voice the xtask test video uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use transcribe::{transcribe, Options, Transcript};

use transcribe::overlap::Overlap;

/// The least share of [`SENTENCES`]' content words PocketSphinx must hear, in order.
/// Measured: 15/17 (88%); half of that, so a worse model or voice still passes
/// and a transcript of stray words does not.
const MIN_OVERLAP: f64 = 0.44;

/// The espeak-ng voice and speed PocketSphinx recognises best (also used by `cargo xtask media`).
const VOICE: &str = "en-us+klatt";
const SPEED: &str = "170";

const SENTENCES: &str = "The house is on the left side of the road. I would like a glass of water please. \
     I will call you later tonight. I need to buy some food. Can you tell me what time it is.";

fn run(cmd: &mut Command, install: &str) {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {program} ({e}): apt-get install {install}"));
    assert!(status.success(), "{program} failed: {status}");
}

/// Speaks `text` into `dir/name` at `rate` Hz with `channels` channels.
fn speak(dir: &Path, text: &str, name: &str, rate: u32, channels: u32) -> PathBuf {
    let raw = dir.join("espeak.wav");
    run(Command::new("espeak-ng").args(["-v", VOICE, "-s", SPEED, "-w"]).arg(&raw).arg(text), "espeak-ng");
    let out = dir.join(name);
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(&raw)
            .args(["-ar", &rate.to_string(), "-ac", &channels.to_string(), "-c:a", "pcm_s16le"])
            .args(["-fflags", "+bitexact", "-flags", "+bitexact", "-map_metadata", "-1"])
            .arg(&out),
        "ffmpeg",
    );
    out
}

#[test]
fn espeak_sentences_are_mostly_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speak(dir.path(), SENTENCES, "speech.wav", 16_000, 1);
    let Transcript { text, words: timed } = transcribe(&wav, &Options::default()).unwrap();

    let overlap = Overlap::of(SENTENCES, &text);
    eprintln!("heard: {text}\n{overlap}");
    overlap.assert_at_least(MIN_OVERLAP, "espeak-ng sentences");

    let duration = hound::WavReader::open(&wav).unwrap().duration() as f64 / 16_000.0;
    // The time checks below hold for any list: the words must be there (the overlap has some).
    assert_eq!(timed.len(), text.split_whitespace().count(), "one timed word per word of `{text}`");
    assert!(timed.iter().all(|w| 0.0 <= w.start_s && w.start_s <= w.end_s && w.end_s <= duration + 0.1));
    assert!(timed.windows(2).all(|w| w[0].end_s <= w[1].start_s), "word times overlap");
    assert!(timed.iter().all(|w| w.confidence.is_some_and(|c| (0.0..=1.0).contains(&c))));
}

#[test]
fn speech_at_44k_stereo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speak(dir.path(), "The cat sat on the mat.", "cd.wav", 44_100, 2);
    let err = format!("{:#}", transcribe(&wav, &Options::default()).unwrap_err());
    assert!(err.contains("44100 Hz, 2 channel(s)") && err.contains("16000 Hz mono"), "{err}");
}

#[test]
fn silence_is_an_empty_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("silence.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
    for _ in 0..32_000 {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    assert_eq!(transcribe(&wav, &Options::default()).unwrap().words, vec![]);
}

#[test]
#[should_panic(expected = "the transcript has no content words")]
fn a_transcript_of_stop_words_fails_the_overlap_check() {
    Overlap::of(SENTENCES, "the is of the and i it is").assert_at_least(MIN_OVERLAP, "stop words only");
}

#[test]
#[should_panic(expected = "fewer than 44% of the spoken content words heard")]
fn a_transcript_with_a_few_spoken_words_fails_the_overlap_check() {
    Overlap::of(SENTENCES, "the house of the glass and time").assert_at_least(MIN_OVERLAP, "three words");
}
