//! Speech-segment detection of VideoSearcher's "librosa" step.
//!
//! [`wav`] reads the audio, [`split`] is `librosa.effects.split` and
//! [`segments`] searches a `top_db` and cuts the audio into sentence-sized clips.

pub mod segments;
pub mod split;
pub mod wav;

pub use segments::{build_clips, detect_segments, detect_segments_in, Clip, Segments, SpeechParams};
pub use split::{split, FramePower, FRAME_LENGTH, HOP_LENGTH};
pub use wav::{read_wav, read_wav_power, MonoAudio, MonoSamples};
