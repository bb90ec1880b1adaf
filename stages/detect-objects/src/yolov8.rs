//! Ultralytics YOLOv8 detection head, as exported to ONNX.
//!
//! Input: RGB scaled to 0..1, NCHW, letterboxed with grey (114) padding. Output
//! `[1, 4 + classes, anchors]`: box centre x, centre y, width, height in input pixels, then one
//! (already sigmoid) score per class.

use anyhow::{ensure, Context, Result};
use image::RgbImage;
use tract_onnx::prelude::tract_ndarray::Ix3;
use tract_onnx::prelude::{TValue, Tensor};

use crate::decode::{nchw_tensor, Channels};
use crate::{coco, Decoder, Detection};

/// The YOLOv8 decoder; labels are COCO names for 80 classes, `class<N>` otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct YoloV8;

impl Decoder for YoloV8 {
    fn output_names(&self) -> Option<&[&str]> {
        None
    }

    fn pad_colour(&self) -> [u8; 3] {
        [114, 114, 114]
    }

    fn input_tensor(&self, input: &RgbImage) -> Result<Tensor> {
        nchw_tensor(input, Channels::Rgb, 1.0 / 255.0)
    }

    fn decode(&self, outputs: &[TValue], score_threshold: f32) -> Result<Vec<Detection>> {
        ensure!(outputs.len() == 1, "YOLOv8 has 1 output, the model gives {}", outputs.len());
        let output = outputs[0]
            .to_plain_array_view::<f32>()
            .and_then(|v| Ok(v.into_dimensionality::<Ix3>()?))
            .with_context(|| format!("YOLOv8 output is not a 3-d f32 tensor: {:?}", outputs[0]))?;
        let (batch, rows, anchors) = output.dim();
        ensure!(
            batch == 1 && rows > 4,
            "YOLOv8 output must be [1, 4 + classes, anchors], got {:?}",
            output.shape()
        );
        let classes = rows - 4;

        let mut detections = Vec::new();
        for a in 0..anchors {
            let (class, score) = (0..classes)
                .map(|k| (k, output[[0, 4 + k, a]]))
                .fold((0, f32::MIN), |best, cur| if cur.1 > best.1 { cur } else { best });
            if score <= score_threshold {
                continue;
            }
            let (cx, cy) = (output[[0, 0, a]], output[[0, 1, a]]);
            let (w, h) = (output[[0, 2, a]], output[[0, 3, a]]);
            detections.push(Detection {
                label: label(class, classes),
                score,
                x1: cx - w / 2.0,
                y1: cy - h / 2.0,
                x2: cx + w / 2.0,
                y2: cy + h / 2.0,
            });
        }
        Ok(detections)
    }
}

fn label(class: usize, classes: usize) -> String {
    if classes == coco::LABELS.len() {
        coco::LABELS[class].to_string()
    } else {
        format!("class{class}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::tract_ndarray::Array3;
    use tract_onnx::prelude::IntoTensor;

    /// An output with `classes` classes and the given anchors (cx, cy, w, h, class, score).
    fn output(classes: usize, anchors: &[(f32, f32, f32, f32, usize, f32)]) -> Vec<TValue> {
        let mut out = Array3::<f32>::zeros((1, 4 + classes, anchors.len()));
        for (a, &(cx, cy, w, h, class, score)) in anchors.iter().enumerate() {
            for (row, v) in [cx, cy, w, h].into_iter().enumerate() {
                out[[0, row, a]] = v;
            }
            out[[0, 4 + class, a]] = score;
            // A weaker second class must not win.
            out[[0, 4 + (class + 1) % classes, a]] = score / 2.0;
        }
        vec![out.into_tensor().into()]
    }

    #[test]
    fn decodes_boxes_and_coco_labels() {
        let outs = output(80, &[(100.0, 50.0, 40.0, 20.0, 0, 0.9), (300.0, 300.0, 10.0, 10.0, 16, 0.6)]);
        let dets = YoloV8.decode(&outs, 0.25).unwrap();
        assert_eq!(
            dets,
            vec![
                Detection { label: "person".into(), score: 0.9, x1: 80.0, y1: 40.0, x2: 120.0, y2: 60.0 },
                Detection { label: "dog".into(), score: 0.6, x1: 295.0, y1: 295.0, x2: 305.0, y2: 305.0 },
            ]
        );
    }

    #[test]
    fn low_scores_are_dropped() {
        let outs = output(80, &[(10.0, 10.0, 4.0, 4.0, 2, 0.2), (20.0, 20.0, 4.0, 4.0, 79, 0.3)]);
        let labels: Vec<String> = YoloV8.decode(&outs, 0.25).unwrap().into_iter().map(|d| d.label).collect();
        assert_eq!(labels, vec!["toothbrush"]);
    }

    #[test]
    fn custom_class_count_uses_numbered_labels() {
        let outs = output(3, &[(10.0, 10.0, 4.0, 4.0, 2, 0.8)]);
        assert_eq!(YoloV8.decode(&outs, 0.25).unwrap()[0].label, "class2");
    }

    #[test]
    fn wrong_output_rank_is_an_error() {
        let outs: Vec<TValue> = vec![Tensor::zero::<f32>(&[1, 84]).unwrap().into()];
        let err = YoloV8.decode(&outs, 0.25).unwrap_err().to_string();
        assert!(err.starts_with("YOLOv8 output is not a 3-d f32 tensor"), "{err}");
    }
}
