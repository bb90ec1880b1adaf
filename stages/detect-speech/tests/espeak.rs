//! Real speech: espeak-ng reads five sentences with 2.5 s pauses, ffmpeg makes it
//! 22 050 Hz mono, and the detected clips must look like sentences.

use std::path::Path;
use std::process::Command;

use detect_speech::{detect_segments, read_wav, SpeechParams};

const SPEECH: &str = r#"<speak>
The quick brown fox jumps over the lazy dog, and then it runs into the forest to find its friends.
<break time="2500ms"/>
Video search systems split long recordings into short clips so that each clip can be transcribed on its own.
<break time="2500ms"/>
Every clip is compressed, transcribed, and scanned for faces, and the results are stored for later queries.
<break time="2500ms"/>
Serverless functions scale to zero when nobody is using them, which keeps the cost of the system low.
<break time="2500ms"/>
This is the last sentence of the test recording, and it ends after a short moment of silence.
</speak>"#;

fn run(program: &str, args: &[&str], install: &str) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); install it with `{install}`"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

fn synthesize(dir: &Path) -> std::path::PathBuf {
    let (ssml, raw, wav) = (
        dir.join("speech.ssml"),
        dir.join("raw.wav"),
        dir.join("speech.wav"),
    );
    std::fs::write(&ssml, SPEECH).unwrap();
    let apt = "apt-get install espeak-ng ffmpeg";
    run(
        "espeak-ng",
        &[
            "-m",
            "-s",
            "140",
            "-w",
            raw.to_str().unwrap(),
            "-f",
            ssml.to_str().unwrap(),
        ],
        apt,
    );
    let args = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        raw.to_str().unwrap(),
        "-ar",
        "22050",
        "-ac",
        "1",
    ];
    run(
        "ffmpeg",
        &[&args[..], &[wav.to_str().unwrap()]].concat(),
        apt,
    );
    wav
}

#[test]
fn spoken_sentences_become_plausible_clips() {
    let dir = tempfile::tempdir().unwrap();
    let audio = read_wav(&synthesize(dir.path())).unwrap();
    assert_eq!(audio.sample_rate, 22050);
    assert!(
        (40.0..50.0).contains(&audio.duration_s()),
        "espeak-ng spoke for {} s",
        audio.duration_s()
    );

    let seg = detect_segments(&audio, &SpeechParams::default()).unwrap();
    let lengths: Vec<f64> = seg.clips.iter().map(|c| c.end_s - c.start_s).collect();
    assert!(seg.clips.len() >= 3, "{seg:?}");
    assert!(
        lengths.iter().all(|l| (6.0..=30.0).contains(l)),
        "clip lengths {lengths:?}"
    );
    assert!(
        seg.clips.windows(2).all(|w| w[0].end_s == w[1].start_s),
        "{:?}",
        seg.clips
    );
    assert!(seg.clips.last().unwrap().end_s <= seg.duration_s);

    // The first sentence (about 6.7 s) ends in the first 2.5 s pause.
    let first_pause = seg
        .intervals
        .windows(2)
        .find(|w| w[1][0] - w[0][1] > 2.0)
        .expect("a pause");
    assert!(
        (6.0..8.0).contains(&first_pause[0][1]),
        "first pause at {first_pause:?}"
    );
    assert_eq!(seg.clips[0].end_s, first_pause[0][1].ceil());
}
