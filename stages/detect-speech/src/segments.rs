//! VideoSearcher's sentence search: find a `top_db` that splits the audio into a sensible
//! number of pieces, then cut it into clips of whole seconds.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use crate::split::{FramePower, FRAME_LENGTH, HOP_LENGTH};
use crate::wav::MonoAudio;

/// Parameters of the search (VideoSearcher's values by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeechParams {
    /// First `top_db` tried.
    pub top_db_min: u32,
    /// Last `top_db` tried; used when no `top_db` gives an acceptable interval count.
    pub top_db_max: u32,
    /// A clip must be longer than this.
    pub min_sentence_s: f64,
    /// Expected longest sentence: sets the fewest intervals accepted.
    pub max_sentence_s: f64,
}

impl Default for SpeechParams {
    fn default() -> Self {
        Self {
            top_db_min: 24,
            top_db_max: 49,
            min_sentence_s: 6.0,
            max_sentence_s: 30.0,
        }
    }
}

impl SpeechParams {
    fn validate(&self) -> Result<()> {
        ensure!(
            self.top_db_min <= self.top_db_max,
            "top_db range {}..={} is empty",
            self.top_db_min,
            self.top_db_max
        );
        ensure!(
            0.0 < self.min_sentence_s && self.min_sentence_s < self.max_sentence_s,
            "sentence length must satisfy 0 < min ({}) < max ({})",
            self.min_sentence_s,
            self.max_sentence_s
        );
        Ok(())
    }
}

/// One clip to cut, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub index: usize,
    pub start_s: f64,
    pub end_s: f64,
}

/// Result of the speech detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segments {
    /// The `top_db` chosen by the search.
    pub top_db: u32,
    pub duration_s: f64,
    pub sample_rate: u32,
    /// Non-silent intervals of `split` at `top_db`, in seconds.
    pub intervals: Vec<[f64; 2]>,
    pub clips: Vec<Clip>,
}

/// Searches `top_db` and builds the clips, as VideoSearcher does.
///
/// For `top_db` in `top_db_min..=top_db_max`, the first whose interval count `n` satisfies
/// `duration / max_sentence <= n < duration / min_sentence` wins; if none does, the last
/// one tried is used. Empty or silent audio has no intervals, which fits no count for
/// audio longer than 0 s (and `0 <= 0 < 0` fails for empty audio), so the result is
/// `top_db_max` with no intervals and no clips.
pub fn detect_segments(audio: &MonoAudio, params: &SpeechParams) -> Result<Segments> {
    detect_segments_in(&FramePower::new(&audio.samples, FRAME_LENGTH, HOP_LENGTH), audio.sample_rate, params)
}

/// [`detect_segments`] over frame loudness already computed (a file read in
/// one pass: [`crate::read_wav_power`]). The frame energies do not depend
/// on top_db: they are computed once.
pub fn detect_segments_in(power: &FramePower, sample_rate: u32, params: &SpeechParams) -> Result<Segments> {
    params.validate()?;
    ensure!(sample_rate > 0, "sample rate is 0");
    let duration_s = power.n_samples() as f64 / f64::from(sample_rate);
    let min_clips = duration_s / params.max_sentence_s;
    let max_clips = duration_s / params.min_sentence_s;

    let mut chosen = None;
    for top_db in params.top_db_min..=params.top_db_max {
        let intervals = power.split(top_db.into());
        let n = intervals.len() as f64;
        let fits = min_clips <= n && n < max_clips;
        chosen = Some((top_db, intervals));
        if fits {
            break;
        }
    }
    let (top_db, intervals) = chosen.expect("validated: the top_db range is not empty");

    let sr = f64::from(sample_rate);
    Ok(Segments {
        top_db,
        duration_s,
        sample_rate,
        intervals: intervals
            .iter()
            .map(|&(s, e)| [s as f64 / sr, e as f64 / sr])
            .collect(),
        clips: build_clips(&intervals, sample_rate, duration_s, params),
    })
}

/// Turns `[start, end)` sample intervals into clips, as VideoSearcher does.
///
/// Each clip starts where the previous kept clip ended (0 for the first) and ends at the
/// interval's end rounded up to a whole second. A clip is kept only if it is longer than
/// `min_sentence_s`; otherwise its interval merges into the next clip. The rounding up can
/// pass the end of the audio: the kept clip's end is then clamped to `duration_s` (the
/// original does not clamp); the keep decision still uses the unclamped end.
pub fn build_clips(
    intervals: &[(usize, usize)],
    sample_rate: u32,
    duration_s: f64,
    params: &SpeechParams,
) -> Vec<Clip> {
    let mut clips = Vec::new();
    let mut last_end = 0.0;
    for &(_, end) in intervals {
        let start_s = last_end;
        let end_s = (end as f64 / f64::from(sample_rate)).ceil();
        if start_s != end_s && end_s - start_s > params.min_sentence_s {
            clips.push(Clip {
                index: clips.len(),
                start_s,
                end_s: end_s.min(duration_s),
            });
            last_end = end_s;
        }
    }
    clips
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 100;

    /// Intervals given in seconds, as samples at 100 Hz.
    fn at_sr(seconds: &[(f64, f64)]) -> Vec<(usize, usize)> {
        seconds
            .iter()
            .map(|&(s, e)| ((s * SR as f64) as usize, (e * SR as f64) as usize))
            .collect()
    }

    fn spans(clips: &[Clip]) -> Vec<(f64, f64)> {
        assert!(
            clips.iter().enumerate().all(|(i, c)| c.index == i),
            "indices {clips:?}"
        );
        clips.iter().map(|c| (c.start_s, c.end_s)).collect()
    }

    fn clips_of(seconds: &[(f64, f64)], duration_s: f64) -> Vec<(f64, f64)> {
        spans(&build_clips(
            &at_sr(seconds),
            SR,
            duration_s,
            &SpeechParams::default(),
        ))
    }

    #[test]
    fn each_clip_starts_where_the_previous_ended() {
        let clips = clips_of(&[(0.5, 7.2), (9.0, 16.5), (18.0, 30.1)], 40.0);
        assert_eq!(clips, vec![(0.0, 8.0), (8.0, 17.0), (17.0, 31.0)]);
    }

    #[test]
    fn short_pieces_merge_into_the_next_clip() {
        // 0..3 and 3..5 are too short; the clip grows until it passes 6 s.
        let clips = clips_of(&[(0.2, 2.5), (3.0, 4.1), (4.5, 9.9), (10.5, 12.0)], 20.0);
        assert_eq!(clips, vec![(0.0, 10.0)]);
    }

    #[test]
    fn clips_of_exactly_min_sentence_are_dropped() {
        // ceil(6.0) - 0 = 6 is not > 6; ceil(6.01) = 7 is.
        assert_eq!(clips_of(&[(1.0, 6.0)], 20.0), vec![]);
        assert_eq!(clips_of(&[(1.0, 6.01)], 20.0), vec![(0.0, 7.0)]);
    }

    #[test]
    fn trailing_short_piece_is_dropped() {
        let clips = clips_of(&[(0.0, 11.5), (13.0, 15.0)], 16.0);
        assert_eq!(clips, vec![(0.0, 12.0)]);
    }

    #[test]
    fn last_clip_end_is_clamped_to_the_duration() {
        let clips = clips_of(&[(0.0, 8.0), (9.0, 20.37)], 20.37);
        assert_eq!(clips, vec![(0.0, 8.0), (8.0, 20.37)]);
    }

    #[test]
    fn no_intervals_means_no_clips() {
        assert_eq!(clips_of(&[], 60.0), vec![]);
    }

    /// 440 Hz tone bursts of `tone_s` separated by `gap_s` of silence, at 22050 Hz.
    fn bursts(count: usize, tone_s: f64, gap_s: f64) -> MonoAudio {
        let sr = 22050;
        let mut samples = Vec::new();
        for _ in 0..count {
            let n = (tone_s * sr as f64) as usize;
            samples.extend(
                (0..n).map(|i| {
                    0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / sr as f32).sin()
                }),
            );
            samples.extend(std::iter::repeat_n(0.0, (gap_s * sr as f64) as usize));
        }
        MonoAudio {
            samples,
            sample_rate: sr,
        }
    }

    #[test]
    fn search_stops_at_the_first_top_db_with_an_acceptable_count() {
        // 5 bursts in 50 s: 5 intervals fit 50/30 <= 5 < 50/6 at the first top_db.
        let seg = detect_segments(&bursts(5, 8.0, 2.0), &SpeechParams::default()).unwrap();
        assert_eq!((seg.top_db, seg.intervals.len()), (24, 5));
        assert_eq!(seg.clips.len(), 5);
        assert!(
            seg.clips.iter().all(|c| c.end_s - c.start_s > 6.0),
            "{:?}",
            seg.clips
        );
    }

    #[test]
    fn search_falls_back_to_the_last_top_db() {
        // 20 bursts of 1 s in 40 s: 20 intervals is never < 40/6, so top_db 49 is used.
        let seg = detect_segments(&bursts(20, 1.0, 1.0), &SpeechParams::default()).unwrap();
        assert_eq!((seg.top_db, seg.intervals.len()), (49, 20));
        assert!(!seg.clips.is_empty(), "no clips from 20 bursts: {seg:?}");
        assert!(
            seg.clips.iter().all(|c| c.end_s - c.start_s > 6.0),
            "{:?}",
            seg.clips
        );
    }

    #[test]
    fn silent_and_empty_audio_give_no_clips() {
        for samples in [vec![0.0; 22050 * 60], vec![]] {
            let seg = detect_segments(
                &MonoAudio {
                    samples,
                    sample_rate: 22050,
                },
                &SpeechParams::default(),
            )
            .unwrap();
            assert_eq!(
                (seg.top_db, seg.intervals.len(), seg.clips.len()),
                (49, 0, 0)
            );
        }
    }

    #[test]
    fn bad_params_are_rejected() {
        let params = SpeechParams {
            top_db_min: 50,
            ..SpeechParams::default()
        };
        let err = detect_segments(&bursts(1, 1.0, 1.0), &params).unwrap_err();
        assert_eq!(err.to_string(), "top_db range 50..=49 is empty");
    }
}
