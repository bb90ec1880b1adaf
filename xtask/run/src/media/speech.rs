//! The spoken track: espeak-ng sentences laid out in groups that VideoSearcher's
//! segmentation cuts into one clip each.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};

use super::run;

/// espeak-ng voice and speed (words per minute): the klatt variant at 170 wpm is the
/// one PocketSphinx's en-us model recognises best (about 95% of these words).
pub const VOICE: &str = "en-us+klatt";
pub const SPEED_WPM: u32 = 170;
/// espeak-ng's native rate; the track is assembled at it.
pub const SAMPLE_RATE: u32 = 22_050;

/// Silence before the first sentence.
pub const LEAD_IN_S: f64 = 1.0;
/// Pause between sentences of a group: shorter than librosa's 2048-sample frame, so no
/// `top_db` splits a group (espeak-ng's own sentence pause is 0.3 s).
pub const SENTENCE_GAP_S: f64 = 0.02;
/// Digital silence between groups: every `top_db` splits there, and a clip's end
/// (rounded up to a whole second) still falls in it.
pub const GROUP_GAP_S: f64 = 2.5;
/// Least silence after the last sentence; the track is padded to whole seconds.
pub const TAIL_S: f64 = 1.0;

/// Four groups of five common sentences (7-9 s of speech each), each recognised word for
/// word on its own, and without long internal pauses that would split a group.
pub const GROUPS: [[&str; 5]; 4] = [
    [
        "The cat sat on the mat.",
        "I want to go home now.",
        "The sun is hot today.",
        "We will eat dinner at six.",
        "He is my best friend.",
    ],
    [
        "The house is on the left side of the road.",
        "I would like a glass of water please.",
        "I will call you later tonight.",
        "I need to buy some food.",
        "Can you tell me what time it is.",
    ],
    [
        "This is a very good day.",
        "He said that he would come back.",
        "There are many people in the room.",
        "I think we should go to the store.",
        "It is time to go to bed.",
    ],
    [
        "We are going to the movies tonight.",
        "The book is on the table.",
        "It is going to rain tomorrow.",
        "The president will speak to the nation.",
        "The children are playing in the water.",
    ],
];

/// The assembled track: 16-bit mono samples at [`SAMPLE_RATE`] and where the speech is.
pub struct Speech {
    pub samples: Vec<i16>,
    /// One span per sentence of [`GROUPS`], in seconds (to the millisecond).
    pub sentence_spans: Vec<(f64, f64)>,
    /// One span per group, in seconds.
    pub group_spans: Vec<(f64, f64)>,
}

impl Speech {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }

    /// The samples as raw little-endian bytes (ffmpeg's `s16le`).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }
}

/// Speaks every sentence and lays the groups out on one track.
pub fn synthesize(work: &Path) -> Result<Speech> {
    let mut speech = Speech { samples: silence(LEAD_IN_S), sentence_spans: Vec::new(), group_spans: Vec::new() };
    for (g, group) in GROUPS.iter().enumerate() {
        if g > 0 {
            speech.samples.extend(silence(GROUP_GAP_S));
        }
        let group_start = seconds(speech.samples.len());
        for (s, sentence) in group.iter().enumerate() {
            if s > 0 {
                speech.samples.extend(silence(SENTENCE_GAP_S));
            }
            let voice = speak(sentence, &work.join(format!("sentence-{g}-{s}.wav")))?;
            let start = seconds(speech.samples.len());
            speech.samples.extend(voice);
            speech.sentence_spans.push((start, seconds(speech.samples.len())));
        }
        speech.group_spans.push((group_start, seconds(speech.samples.len())));
    }
    let whole_seconds = (speech.duration_s() + TAIL_S).ceil();
    speech.samples.resize((whole_seconds * f64::from(SAMPLE_RATE)) as usize, 0);
    Ok(speech)
}

/// One sentence from espeak-ng, without its leading and trailing digital silence.
fn speak(sentence: &str, wav: &Path) -> Result<Vec<i16>> {
    run(
        Command::new("espeak-ng").args(["-v", VOICE, "-s", &SPEED_WPM.to_string(), "-w"]).arg(wav).arg(sentence),
        "espeak-ng",
    )?;
    let pcm = run(
        Command::new("ffmpeg").args(["-nostdin", "-loglevel", "error", "-i"]).arg(wav).args([
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            &SAMPLE_RATE.to_string(),
            "pipe:1",
        ]),
        "ffmpeg",
    )?;
    let samples: Vec<i16> = pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let start = samples.iter().position(|&s| s != 0).unwrap_or(samples.len());
    let end = samples.iter().rposition(|&s| s != 0).map_or(start, |i| i + 1);
    ensure!(end > start, "espeak-ng produced silence for `{sentence}`");
    Ok(samples[start..end].to_vec())
}

fn silence(seconds: f64) -> Vec<i16> {
    vec![0; (seconds * f64::from(SAMPLE_RATE)).round() as usize]
}

/// Sample count in seconds, rounded to the millisecond (so it reads back from JSON unchanged).
fn seconds(samples: usize) -> f64 {
    (samples as f64 * 1000.0 / f64::from(SAMPLE_RATE)).round() / 1000.0
}
