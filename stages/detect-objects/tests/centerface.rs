//! The real CenterFace model on real pictures.
//!
//! Needs the model (`cargo xtask model`, or `$VS_MODEL_DIR/centerface.onnx`) and the NASA
//! portrait from Debian's `python3-imageio` (or `$VS_FACE_PICTURE`); fails when either is missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use detect_objects::{iou, DecoderKind, Detection, Detector, DetectorConfig};
use image::{Rgb, RgbImage};

const FACE_PICTURE: &str = "/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png";

fn model_path() -> PathBuf {
    let path = match std::env::var_os("VS_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir).join("centerface.onnx"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/centerface.onnx"),
    };
    assert!(
        path.is_file(),
        "CenterFace model missing at {}; fetch it with `cargo xtask model` (or set VS_MODEL_DIR)",
        path.display()
    );
    path
}

fn face_picture() -> RgbImage {
    let path = std::env::var("VS_FACE_PICTURE").unwrap_or_else(|_| FACE_PICTURE.to_string());
    assert!(
        Path::new(&path).is_file(),
        "face picture missing at {path}; install it with `apt-get install --no-install-recommends python3-imageio`"
    );
    image::open(&path).unwrap_or_else(|e| panic!("cannot decode {path}: {e}")).to_rgb8()
}

/// One detector for all tests, shared across test threads as the stage shares it.
fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        Detector::load(model_path(), DecoderKind::CenterFace, DecoderKind::CenterFace.default_config())
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
    Detection { label: "face".into(), score: 1.0, x1, y1, x2, y2 }
}

#[test]
fn finds_the_face_in_a_real_portrait() {
    let faces = detector().detect(&face_picture()).unwrap();
    assert!(!faces.is_empty(), "no face found");
    let best = &faces[0];
    assert_eq!(best.label, "face");
    assert!(best.score > 0.5, "{best:?}");
    assert!(0.0 <= best.x1 && best.x1 < best.x2 && best.x2 <= 512.0, "{best:?}");
    assert!(0.0 <= best.y1 && best.y1 < best.y2 && best.y2 <= 512.0, "{best:?}");
    // Eileen Collins' face spans roughly x 175..275, y 60..190 in the 512x512 portrait.
    let expected = face(175.0, 60.0, 275.0, 190.0);
    assert!(iou(best, &expected) > 0.5, "box {best:?} misses the face {expected:?}");
    assert_eq!(faces.len(), 1, "one person in the picture: {faces:?}");
}

#[test]
fn face_box_follows_the_portrait_inside_a_wide_frame() {
    let portrait = face_picture();
    let mut frame = RgbImage::from_pixel(1280, 640, Rgb([90, 90, 90]));
    image::imageops::replace(&mut frame, &portrait, 700, 100);
    let alone = detector().detect(&portrait).unwrap();
    let framed = detector().detect(&frame).unwrap();
    assert_eq!(framed.len(), 1, "{framed:?}");
    let (a, f) = (&alone[0], &framed[0]);
    let shifted = face(a.x1 + 700.0, a.y1 + 100.0, a.x2 + 700.0, a.y2 + 100.0);
    assert!(iou(f, &shifted) > 0.8, "framed {f:?} vs shifted {shifted:?}");
}

#[test]
fn solid_colour_frame_has_no_faces() {
    let frame = RgbImage::from_pixel(640, 640, Rgb([30, 120, 200]));
    assert_eq!(detector().detect(&frame).unwrap(), vec![]);
}

/// Colour bars over a grey ramp, like ffmpeg's `testsrc`/`smptebars`.
#[test]
fn test_pattern_frame_has_no_faces() {
    const BARS: [[u8; 3]; 7] =
        [[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0], [0, 0, 192]];
    let frame = RgbImage::from_fn(640, 480, |x, y| {
        if y < 360 {
            Rgb(BARS[(x * 7 / 640) as usize])
        } else {
            let v = (x * 255 / 639) as u8;
            Rgb([v, v, v])
        }
    });
    assert_eq!(detector().detect(&frame).unwrap(), vec![]);
}

#[test]
fn detector_is_shared_across_threads() {
    let portrait = face_picture();
    let results: Vec<Vec<Detection>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2).map(|_| s.spawn(|| detector().detect(&portrait).unwrap())).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(results[0].len(), 1);
    assert_eq!(results[0], results[1]);
}

#[test]
fn missing_model_error_names_the_path() {
    let path = Path::new("/nonexistent/models/centerface.onnx");
    let config = DetectorConfig { score_threshold: 0.5, nms_iou: 0.3, input_size: 640 };
    let err = Detector::load(path, DecoderKind::CenterFace, config).err().expect("load must fail");
    assert_eq!(
        err.to_string(),
        "model file /nonexistent/models/centerface.onnx not found; fetch it with `cargo xtask model`"
    );
}

#[test]
fn corrupt_model_error_names_the_path() {
    let path = std::env::temp_dir().join(format!("detect-objects-corrupt-{}.onnx", std::process::id()));
    std::fs::write(&path, b"this is not an onnx protobuf").unwrap();
    let result = Detector::load(&path, DecoderKind::CenterFace, DecoderKind::CenterFace.default_config());
    std::fs::remove_file(&path).unwrap();
    let err = format!("{:#}", result.err().expect("load must fail"));
    assert!(err.starts_with(&format!("cannot load ONNX model {}: ", path.display())), "{err}");
}
