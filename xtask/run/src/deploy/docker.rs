//! `kind: docker`: the embedded runtime running the images of `cargo xtask
//! build` as containers (`local/container.rs`). Before it starts: the engine
//! must answer and hold, for this machine's platform, every function's image
//! exactly as the last build made it.

use crate::pipeline::Pipeline;

pub fn prepare(pipeline: &Pipeline) -> anyhow::Result<()> {
    if pipeline.detector_model_in_images().is_none() {
        return Err(pipeline
            .error_at(
                "parameters.detector.model",
                "no function's `assets:` carries the detector model, so no image has it",
                Some("add it to detect-objects: `assets: [{ detector_model: true, to: /opt/videosearcher/models/detector.onnx }]`".into()),
            )
            .into());
    }
    crate::local::check_images(pipeline)
}
