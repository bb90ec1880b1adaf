//! Fitting a picture into the square model input and mapping boxes back.

use image::imageops::FilterType;
use image::{DynamicImage, Rgb, RgbImage};

use crate::Detection;

/// Where a picture of `source` size lands inside a `size` x `size` model input: scaled to fit
/// (aspect ratio kept) and centred, the rest padded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub source: (u32, u32),
    pub size: u32,
    pub scaled: (u32, u32),
    pub offset: (u32, u32),
}

impl Letterbox {
    pub fn fit(source_width: u32, source_height: u32, size: u32) -> Self {
        let scale = (size as f32 / source_width as f32).min(size as f32 / source_height as f32);
        let scaled_dim = |d: u32| ((d as f32 * scale).round() as u32).clamp(1, size);
        let scaled = (scaled_dim(source_width), scaled_dim(source_height));
        let offset = ((size - scaled.0) / 2, (size - scaled.1) / 2);
        Self { source: (source_width, source_height), size, scaled, offset }
    }

    /// The model input: `picture` resized (bilinear) onto a `pad`-coloured square.
    pub fn apply(&self, picture: &RgbImage, pad: [u8; 3]) -> RgbImage {
        let resized;
        let fitted = if picture.dimensions() == self.scaled {
            picture
        } else {
            // Through DynamicImage so the resize runs as compiled (optimised) in `image`.
            let (w, h) = self.scaled;
            resized = DynamicImage::ImageRgb8(picture.clone()).resize_exact(w, h, FilterType::Triangle);
            resized.as_rgb8().expect("resizing keeps the RGB8 layout")
        };
        let mut canvas = RgbImage::from_pixel(self.size, self.size, Rgb(pad));
        let pixels: &mut [u8] = &mut canvas;
        let row_len = 3 * self.scaled.0 as usize;
        let canvas_stride = 3 * self.size as usize;
        let (x0, y0) = (self.offset.0 as usize, self.offset.1 as usize);
        for (y, row) in fitted.as_raw().chunks_exact(row_len).enumerate() {
            let start = (y0 + y) * canvas_stride + 3 * x0;
            pixels[start..start + row_len].copy_from_slice(row);
        }
        canvas
    }

    /// Maps a box from model-input pixels to source pixels, clamped to the source picture.
    /// Returns `None` when nothing of the box is left inside it.
    pub fn to_source(&self, d: Detection) -> Option<Detection> {
        let sx = self.scaled.0 as f32 / self.source.0 as f32;
        let sy = self.scaled.1 as f32 / self.source.1 as f32;
        let (w, h) = (self.source.0 as f32, self.source.1 as f32);
        let x = |v: f32| ((v - self.offset.0 as f32) / sx).clamp(0.0, w);
        let y = |v: f32| ((v - self.offset.1 as f32) / sy).clamp(0.0, h);
        let mapped = Detection { x1: x(d.x1), y1: y(d.y1), x2: x(d.x2), y2: y(d.y2), ..d };
        (mapped.x2 > mapped.x1 && mapped.y2 > mapped.y1).then_some(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection { label: "face".into(), score: 0.9, x1, y1, x2, y2 }
    }

    #[test]
    fn wide_picture_is_centred_vertically() {
        let lb = Letterbox::fit(1280, 720, 640);
        assert_eq!(lb.scaled, (640, 360));
        assert_eq!(lb.offset, (0, 140));
    }

    #[test]
    fn boxes_map_back_to_source_pixels() {
        let lb = Letterbox::fit(1280, 720, 640);
        let d = lb.to_source(det(100.0, 190.0, 200.0, 290.0)).unwrap();
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (200.0, 100.0, 400.0, 300.0));
    }

    #[test]
    fn boxes_are_clamped_and_padding_only_boxes_dropped() {
        let lb = Letterbox::fit(1280, 720, 640);
        let d = lb.to_source(det(-10.0, 100.0, 50.0, 200.0)).unwrap();
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (0.0, 0.0, 100.0, 120.0));
        assert_eq!(lb.to_source(det(10.0, 0.0, 50.0, 130.0)), None);
    }

    #[test]
    fn apply_pads_with_given_colour() {
        let picture = RgbImage::from_pixel(64, 32, Rgb([200, 10, 10]));
        let input = Letterbox::fit(64, 32, 32).apply(&picture, [1, 2, 3]);
        assert_eq!(input.dimensions(), (32, 32));
        assert_eq!(input.get_pixel(16, 2), &Rgb([1, 2, 3]));
        assert_eq!(input.get_pixel(16, 16), &Rgb([200, 10, 10]));
    }
}
