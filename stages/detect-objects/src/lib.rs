//! Object and face detection on still frames with ONNX models run by tract.
//!
//! A [`Detector`] loads one model once and is shared across requests (`detect` takes `&self`).
//! What the model's outputs mean is up to a [`Decoder`]: CenterFace (faces) or YOLOv8 (objects,
//! labelled with the model's own class names). Boxes are mapped back to pixels of the original
//! picture and pass through NMS.

mod centerface;
mod class_names;
mod coco;
mod decode;
mod detector;
mod letterbox;
mod nms;
mod yolov8;

pub use centerface::CenterFace;
pub use decode::{Decoder, DecoderKind};
pub use detector::{Detector, DetectorConfig};
pub use letterbox::Letterbox;
pub use nms::{iou, nms};
pub use yolov8::YoloV8;

use serde::{Deserialize, Serialize};

/// One detected object; coordinates are pixels of the picture passed to [`Detector::detect`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label: String,
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
}
