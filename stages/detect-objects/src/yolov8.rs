//! Ultralytics YOLOv8 detection head, as exported to ONNX (YOLOv8, 11 and 12 share it).
//!
//! Input: RGB scaled to 0..1, NCHW, letterboxed with grey (114) padding. Output
//! `[1, 4 + classes, anchors]`: box centre x, centre y, width, height in input pixels, then one
//! (already sigmoid) score per class.
//!
//! The labels are the model's own: Ultralytics writes the class names into the ONNX metadata
//! (`names`, see `class_names.rs`). A model without usable names is labelled with a list we
//! know only when its class count matches one (the 80 COCO classes), with a warning; any other
//! model does not load, since numbered labels would pass for answers nobody can read.

use anyhow::{bail, ensure, Context, Result};
use image::RgbImage;
use tract_onnx::prelude::tract_ndarray::Ix3;
use tract_onnx::prelude::{TValue, Tensor, TypedModel};

use crate::decode::{nchw_tensor, Channels};
use crate::{class_names, coco, Decoder, Detection};

/// The YOLOv8 decoder; [`Decoder::bind`] gives it the model's class names.
#[derive(Clone, Debug, Default)]
pub struct YoloV8 {
    labels: Vec<String>,
}

impl YoloV8 {
    /// A decoder for a model with these classes, in order.
    pub fn with_labels<S: Into<String>>(labels: impl IntoIterator<Item = S>) -> Self {
        Self { labels: labels.into_iter().map(Into::into).collect() }
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }
}

impl Decoder for YoloV8 {
    fn output_names(&self) -> Option<&[&str]> {
        None
    }

    fn bind(&mut self, model: &TypedModel) -> Result<Option<String>> {
        ensure!(model.outputs.len() == 1, "a YOLOv8 model has 1 output, this one has {}", model.outputs.len());
        let fact = model.output_fact(0)?;
        let shape = fact.shape.as_concrete().with_context(|| format!("the YOLOv8 output's shape {:?} is not fixed", fact.shape))?;
        ensure!(
            shape.len() == 3 && shape[0] == 1 && shape[1] > 4,
            "a YOLOv8 output is [1, 4 + classes, anchors], this one is {shape:?}"
        );
        let classes = shape[1] - 4;
        let why_not = match model.properties.get(class_names::PROPERTY) {
            None => "it has no `names` metadata".to_string(),
            Some(value) => match value.try_as_plain_ram().and_then(|plain| plain.to_scalar::<String>().cloned()) {
                Err(_) => format!("its `names` metadata is not text: {value:?}"),
                Ok(text) => match class_names::parse(&text) {
                    Err(err) => format!("its `names` metadata cannot be read: {err:#}"),
                    Ok(names) if names.len() != classes => {
                        format!("its `names` metadata names {} classes, but its output has {classes}", names.len())
                    }
                    Ok(names) => {
                        self.labels = names;
                        return Ok(None);
                    }
                },
            },
        };
        if classes != coco::LABELS.len() {
            bail!(
                "a YOLOv8 model with {classes} classes needs its class names, and {why_not}\n\
                 help: export it with Ultralytics (which writes `names` into the ONNX metadata), or use a model of the {} COCO classes",
                coco::LABELS.len()
            );
        }
        self.labels = coco::LABELS.map(String::from).to_vec();
        Ok(Some(format!("labelling the {classes} classes of this YOLOv8 model as COCO's, as {why_not}")))
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
        ensure!(
            classes == self.labels.len(),
            "YOLOv8 output has {classes} classes, the decoder knows {} labels",
            self.labels.len()
        );

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
                label: self.labels[class].clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::tract_ndarray::Array3;
    use tract_onnx::prelude::IntoTensor;

    fn coco() -> YoloV8 {
        YoloV8::with_labels(coco::LABELS)
    }

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
        let dets = coco().decode(&outs, 0.25).unwrap();
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
        let labels: Vec<String> = coco().decode(&outs, 0.25).unwrap().into_iter().map(|d| d.label).collect();
        assert_eq!(labels, vec!["toothbrush"]);
    }

    #[test]
    fn labels_come_from_the_decoder() {
        let outs = output(3, &[(10.0, 10.0, 4.0, 4.0, 2, 0.8)]);
        assert_eq!(YoloV8::with_labels(["a", "b", "c"]).decode(&outs, 0.25).unwrap()[0].label, "c");
    }

    #[test]
    fn class_count_other_than_the_labels_is_an_error() {
        let outs = output(3, &[(10.0, 10.0, 4.0, 4.0, 2, 0.8)]);
        let err = coco().decode(&outs, 0.25).unwrap_err().to_string();
        assert_eq!(err, "YOLOv8 output has 3 classes, the decoder knows 80 labels");
    }

    /// A model whose one output is its input, of shape `[1, 4 + classes, 10]`, with `names`.
    fn model(classes: usize, names: Option<&str>) -> TypedModel {
        use tract_onnx::prelude::*;
        let mut model = TypedModel::default();
        let input = model.add_source("images", f32::fact([1, 4 + classes, 10])).unwrap();
        model.select_output_outlets(&[input]).unwrap();
        if let Some(names) = names {
            model.properties.insert(class_names::PROPERTY.into(), tensor0(names.to_string()).into_arc_tensor());
        }
        model
    }

    #[test]
    fn bind_takes_the_models_own_names() {
        let mut decoder = YoloV8::default();
        assert_eq!(decoder.bind(&model(2, Some("{0: 'cat', 1: 'dog'}"))).unwrap(), None);
        assert_eq!(decoder.labels(), ["cat", "dog"]);
    }

    #[test]
    fn bind_falls_back_to_coco_for_80_classes_and_says_why() {
        let mut decoder = YoloV8::default();
        let warning = decoder.bind(&model(80, None)).unwrap();
        assert_eq!(warning.as_deref(), Some("labelling the 80 classes of this YOLOv8 model as COCO's, as it has no `names` metadata"));
        assert_eq!(decoder.labels()[16], "dog");
        let warning = decoder.bind(&model(80, Some("{0: 'cat'}"))).unwrap().unwrap();
        assert!(warning.ends_with("as its `names` metadata names 1 classes, but its output has 80"), "{warning}");
    }

    #[test]
    fn bind_refuses_unknown_class_counts_without_names() {
        let err = YoloV8::default().bind(&model(3, Some("[cat, dog, cow]"))).unwrap_err().to_string();
        assert_eq!(
            err,
            "a YOLOv8 model with 3 classes needs its class names, and its `names` metadata cannot be read: expected `{` at offset 0, found `[cat, dog, c`\n\
             help: export it with Ultralytics (which writes `names` into the ONNX metadata), or use a model of the 80 COCO classes"
        );
    }

    #[test]
    fn wrong_output_rank_is_an_error() {
        let outs: Vec<TValue> = vec![Tensor::zero::<f32>(&[1, 84]).unwrap().into()];
        let err = coco().decode(&outs, 0.25).unwrap_err().to_string();
        assert!(err.starts_with("YOLOv8 output is not a 3-d f32 tensor"), "{err}");
    }
}
