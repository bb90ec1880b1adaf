//! Non-maximum suppression.

use crate::Detection;

/// Intersection over union of two boxes; 0 when they do not overlap or are empty.
pub fn iou(a: &Detection, b: &Detection) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = w * h;
    let union = a.area() + b.area() - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Keeps the best-scoring boxes: a box is dropped when it overlaps a better box of the same
/// label with IoU >= `iou_threshold`. The result is sorted by score, best first.
pub fn nms(mut detections: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(detections.len());
    for candidate in detections {
        let suppressed = kept
            .iter()
            .any(|k| k.label == candidate.label && iou(k, &candidate) >= iou_threshold);
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection { label: label.into(), score, x1, y1, x2, y2 }
    }

    #[test]
    fn iou_of_identical_boxes_is_one() {
        let a = det("face", 0.9, 10.0, 10.0, 20.0, 20.0);
        assert_eq!(iou(&a, &a), 1.0);
    }

    #[test]
    fn iou_of_half_overlapping_boxes_is_one_third() {
        let a = det("face", 0.9, 0.0, 0.0, 10.0, 10.0);
        let b = det("face", 0.9, 5.0, 0.0, 15.0, 10.0);
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn iou_of_disjoint_or_empty_boxes_is_zero() {
        let a = det("face", 0.9, 0.0, 0.0, 10.0, 10.0);
        let b = det("face", 0.9, 20.0, 20.0, 30.0, 30.0);
        let empty = det("face", 0.9, 5.0, 5.0, 5.0, 5.0);
        assert_eq!(iou(&a, &b), 0.0);
        assert_eq!(iou(&empty, &empty), 0.0);
    }

    #[test]
    fn nms_drops_overlapping_lower_score_box() {
        let kept = nms(
            vec![
                det("face", 0.6, 1.0, 1.0, 11.0, 11.0),
                det("face", 0.9, 0.0, 0.0, 10.0, 10.0),
                det("face", 0.7, 50.0, 50.0, 60.0, 60.0),
            ],
            0.3,
        );
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }

    #[test]
    fn nms_keeps_overlap_below_threshold() {
        // IoU 1/3 is below 0.5, so both stay.
        let kept = nms(
            vec![det("face", 0.9, 0.0, 0.0, 10.0, 10.0), det("face", 0.8, 5.0, 0.0, 15.0, 10.0)],
            0.5,
        );
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn nms_suppresses_only_within_a_label() {
        let kept = nms(
            vec![det("person", 0.9, 0.0, 0.0, 10.0, 10.0), det("dog", 0.8, 0.0, 0.0, 10.0, 10.0)],
            0.3,
        );
        let labels: Vec<&str> = kept.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(labels, vec!["person", "dog"]);
    }

    #[test]
    fn nms_of_nothing_is_nothing() {
        assert!(nms(Vec::new(), 0.3).is_empty());
    }
}
