//! Samples as WAV bytes, written by hound. Shared by path between the
//! crate's unit tests (`src/wav.rs`) and its integration tests.

use std::io::Cursor;

use hound::{WavSpec, WavWriter};

pub fn encode<S: hound::Sample + Copy>(spec: WavSpec, samples: &[S]) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = WavWriter::new(&mut bytes, spec).unwrap();
    samples.iter().for_each(|&s| writer.write_sample(s).unwrap());
    writer.finalize().unwrap();
    bytes.into_inner()
}
