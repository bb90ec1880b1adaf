//! Loading an ONNX model once and running it on pictures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::{nms, Decoder, DecoderKind, Detection, Letterbox};

/// Thresholds and model input size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Detections scoring at or below this are dropped (0..1).
    pub score_threshold: f32,
    /// Boxes of one label overlapping a better one with at least this IoU are dropped (0..1).
    pub nms_iou: f32,
    /// Side of the square model input in pixels, a multiple of 32.
    pub input_size: u32,
}

impl DetectorConfig {
    fn validate(&self) -> Result<()> {
        ensure!(
            self.input_size >= 32 && self.input_size.is_multiple_of(32),
            "input_size {} is not a positive multiple of 32; use e.g. 640",
            self.input_size
        );
        ensure!(
            (0.0..1.0).contains(&self.score_threshold),
            "score_threshold {} is outside 0..1",
            self.score_threshold
        );
        ensure!((0.0..=1.0).contains(&self.nms_iou), "nms_iou {} is outside 0..1", self.nms_iou);
        Ok(())
    }
}

/// A loaded, optimised model plus its decoder; cheap to share (`Send + Sync`, `detect(&self)`).
pub struct Detector {
    plan: Arc<TypedRunnableModel>,
    decoder: Box<dyn Decoder>,
    config: DetectorConfig,
    path: PathBuf,
    warning: Option<String>,
}

impl Detector {
    /// Loads and optimises the ONNX model at `path` for `config.input_size` square inputs.
    pub fn load(path: impl AsRef<Path>, kind: DecoderKind, config: DetectorConfig) -> Result<Self> {
        Self::load_with_decoder(path, kind.decoder(), config)
    }

    /// As [`Detector::load`], with any decoder.
    pub fn load_with_decoder(
        path: impl AsRef<Path>,
        mut decoder: Box<dyn Decoder>,
        config: DetectorConfig,
    ) -> Result<Self> {
        let path = path.as_ref();
        config.validate()?;
        if !path.is_file() {
            bail!("model file {} not found; fetch it with `cargo xtask model`", path.display());
        }
        let (plan, warning) = (|| {
            let model = optimise(path, decoder.as_ref(), config.input_size)?;
            let warning = decoder.bind(&model)?;
            Ok::<_, anyhow::Error>((model.into_runnable()?, warning))
        })()
        .with_context(|| format!("cannot load ONNX model {}", path.display()))?;
        Ok(Self { plan, decoder, config, path: path.to_path_buf(), warning })
    }

    /// What the decoder chose because the model did not say (e.g. which labels), for the log.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// Detections in `picture` pixels, best score first.
    pub fn detect(&self, picture: &RgbImage) -> Result<Vec<Detection>> {
        let (width, height) = picture.dimensions();
        ensure!(width > 0 && height > 0, "picture is empty ({width}x{height})");
        let letterbox = Letterbox::fit(width, height, self.config.input_size);
        let input = letterbox.apply(picture, self.decoder.pad_colour());
        let tensor = self.decoder.input_tensor(&input)?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into()))
            .with_context(|| format!("running model {} failed", self.path.display()))?;
        let raw = self.decoder.decode(&outputs, self.config.score_threshold)?;
        let in_picture = raw.into_iter().filter_map(|d| letterbox.to_source(d)).collect();
        Ok(nms(in_picture, self.config.nms_iou))
    }
}

/// Parses the model, fixes its input to `[1, 3, size, size]`, picks the decoder's outputs and
/// optimises it (its metadata stays in `properties`).
fn optimise(path: &Path, decoder: &dyn Decoder, size: u32) -> Result<TypedModel> {
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    ensure!(model.inputs.len() == 1, "model has {} inputs, expected 1 image input", model.inputs.len());
    let size = size as usize;
    model.set_input_fact(0, f32::fact([1, 3, size, size]).into())?;
    if let Some(names) = decoder.output_names() {
        model.select_outputs_by_name(names)?;
    }
    // Declared output shapes belong to the size the model was exported at; infer them anew.
    for ix in 0..model.outputs.len() {
        model.set_output_fact(ix, InferenceFact::default())?;
    }
    model.into_optimized()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Detector>();
    }

    #[test]
    fn input_size_must_be_multiple_of_32() {
        let config = DetectorConfig { input_size: 600, ..DecoderKind::CenterFace.default_config() };
        let err = Detector::load("/nonexistent.onnx", DecoderKind::CenterFace, config).err().unwrap();
        assert_eq!(err.to_string(), "input_size 600 is not a positive multiple of 32; use e.g. 640");
    }
}
