//! detect-objects (VideoSearcher: object-detector): every sampled frame of a
//! clip → boxes, scores and labels from an ONNX detector (CenterFace faces by
//! default; YOLOv12n's COCO objects when `parameters.detector.model` says so),
//! decoded and NMS-filtered. The model is loaded once at start-up: without it,
//! or without labels for its classes, the function does not start.

use std::process::ExitCode;

use anyhow::Context as _;
use detect_objects::{DecoderKind, Detection, Detector, DetectorConfig};
use serde::Serialize;
use stage_runtime::{param, Artifact, Artifacts, Context, Handler, Invocation, StageError};

struct DetectObjects {
    detector: Detector,
    decoder: DecoderKind,
}

/// `detections.json`: one entry per frame, in frame order.
#[derive(Serialize)]
struct Detections<'a> {
    model: String,
    decoder: &'a str,
    frames: Vec<FrameDetections>,
}

#[derive(Serialize)]
struct FrameDetections {
    frame: String,
    width: u32,
    height: u32,
    detections: Vec<Detection>,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        let model = stage_runtime::var("VS_DETECTOR_MODEL")?.context("VS_DETECTOR_MODEL is not set: the detector needs a model path")?;
        let decoder: DecoderKind = param("VS_DETECTOR_DECODER", DecoderKind::CenterFace)?;
        let defaults = decoder.default_config();
        let config = DetectorConfig {
            score_threshold: param("VS_DETECTOR_SCORE_THRESHOLD", defaults.score_threshold)?,
            nms_iou: param("VS_DETECTOR_NMS_IOU", defaults.nms_iou)?,
            input_size: param("VS_DETECTOR_INPUT_SIZE", defaults.input_size)?,
        };
        let detector = Detector::load(&model, decoder, config)?;
        if let Some(warning) = detector.warning() {
            tracing::warn!(model = %model, "{warning}");
        }
        Ok(DetectObjects { detector, decoder })
    })
}

impl Handler for DetectObjects {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let mut frames = Vec::new();
        for (index, uri) in stage_runtime::many(inv, "frames")?.iter().enumerate() {
            let path = cx.fetch_uri(uri, &format!("frame-{index:04}"))?;
            let not_a_picture = |e: &dyn std::fmt::Display| StageError::unprocessable("bad_media", format!("{uri} is not a picture: {e}"));
            let picture = cx.tool(|| {
                let reader = image::ImageReader::open(&path).and_then(|r| r.with_guessed_format()).map_err(|e| not_a_picture(&e))?;
                Ok::<_, StageError>(reader.decode().map_err(|e| not_a_picture(&e))?.to_rgb8())
            })?;
            let detections = cx.tool(|| self.detector.detect(&picture))?;
            frames.push(FrameDetections { frame: uri.clone(), width: picture.width(), height: picture.height(), detections });
            std::fs::remove_file(&path).ok();
        }
        let doc = Detections { model: self.detector.model_path().display().to_string(), decoder: self.decoder.name(), frames };
        Ok(Artifacts::from([("detections".to_string(), Artifact::One(cx.put_json(&doc, "detections.json")?))]))
    }
}
