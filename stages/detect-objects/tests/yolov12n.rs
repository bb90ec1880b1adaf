//! The real COCO model (Ultralytics YOLOv12n) on real pictures, labelled from its own metadata.
//!
//! Needs the model (`cargo xtask model yolov12n-coco`, or `$VS_MODEL_DIR/yolov12n.onnx`; its
//! weights are AGPL-3.0, so it is fetched, never committed) and two pictures from Debian's
//! `python3-imageio`: the NASA portrait and Chelsea the cat. Fails when any is missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use detect_objects::{iou, DecoderKind, Detection, Detector};
use image::{Rgb, RgbImage};

const PICTURES: &str = "/usr/lib/python3/dist-packages/imageio/resources/images";

fn model_path() -> PathBuf {
    let path = match std::env::var_os("VS_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir).join("yolov12n.onnx"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/yolov12n.onnx"),
    };
    assert!(
        path.is_file(),
        "COCO model missing at {}; fetch it with `cargo xtask model yolov12n-coco` (or set VS_MODEL_DIR)",
        path.display()
    );
    path
}

fn picture(name: &str) -> RgbImage {
    let path = Path::new(PICTURES).join(name);
    assert!(
        path.is_file(),
        "picture missing at {}; install it with `apt-get install --no-install-recommends python3-imageio`",
        path.display()
    );
    image::open(&path).unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display())).to_rgb8()
}

/// One detector for all tests, as the stage shares it.
fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        Detector::load(model_path(), DecoderKind::YoloV8, DecoderKind::YoloV8.default_config())
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn best<'a>(detections: &'a [Detection], label: &str) -> &'a Detection {
    detections
        .iter()
        .find(|d| d.label == label)
        .unwrap_or_else(|| panic!("no `{label}` among {detections:?}"))
}

fn region(label: &str, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
    Detection { label: label.into(), score: 1.0, x1, y1, x2, y2 }
}

#[test]
fn labels_come_from_the_models_own_names() {
    assert_eq!(detector().warning(), None, "the model's `names` metadata was not used");
}

#[test]
fn finds_the_astronaut_as_a_person() {
    let detections = detector().detect(&picture("astronaut.png")).unwrap();
    let person = best(&detections, "person");
    assert!(person.score > 0.5, "{person:?}");
    // Eileen Collins, head to the bottom edge: roughly x 20..370, y 15..512 of 512x512.
    let expected = region("person", 20.0, 15.0, 370.0, 512.0);
    assert!(iou(person, &expected) > 0.7, "box {person:?} misses the astronaut {expected:?}");
    assert_eq!(detections.iter().filter(|d| d.label == "person").count(), 1, "one person: {detections:?}");
}

#[test]
fn finds_chelsea_as_a_cat() {
    let detections = detector().detect(&picture("chelsea.png")).unwrap();
    let cat = best(&detections, "cat");
    assert!(cat.score > 0.5, "{cat:?}");
    assert_eq!(&detections[0], cat, "the cat is the best detection: {detections:?}");
    // The cat fills the 451x300 picture but for the background on the right.
    let animal = region("cat", 0.0, 0.0, 400.0, 300.0);
    let overlap = (cat.x2.min(animal.x2) - cat.x1.max(animal.x1)).max(0.0) * (cat.y2.min(animal.y2) - cat.y1.max(animal.y1)).max(0.0);
    let covered = overlap / animal.area();
    assert!(covered > 0.8, "box {cat:?} covers {:.0} % of the cat", covered * 100.0);
    assert!(iou(cat, &animal) > 0.7, "box {cat:?} vs the cat {animal:?}");
}

#[test]
fn solid_colour_frame_has_no_objects() {
    let frame = RgbImage::from_pixel(640, 360, Rgb([30, 120, 200]));
    assert_eq!(detector().detect(&frame).unwrap(), vec![]);
}

#[test]
fn cat_box_follows_the_picture_inside_a_wide_frame() {
    let cat = picture("chelsea.png");
    let mut frame = RgbImage::from_pixel(1280, 720, Rgb([114, 114, 114]));
    image::imageops::replace(&mut frame, &cat, 600, 200);
    let alone = detector().detect(&cat).unwrap();
    let framed = detector().detect(&frame).unwrap();
    let (a, f) = (best(&alone, "cat"), best(&framed, "cat"));
    let shifted = region("cat", a.x1 + 600.0, a.y1 + 200.0, a.x2 + 600.0, a.y2 + 200.0);
    assert!(iou(f, &shifted) > 0.8, "framed {f:?} vs shifted {shifted:?}");
}
