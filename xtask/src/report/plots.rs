//! The report's SVG plots (plotters, SVG backend: the text is the
//! browser's to render, so no font is needed here).

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::records::{InvocationRecord, RequestRecord};

const SIZE: (u32, u32) = (720, 420);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Plot = anyhow::Result<String>;

fn error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}

/// The latency CDF of each run's succeeded measured requests.
pub fn latency_cdf(runs: &[(&str, &[RequestRecord])]) -> Plot {
    let series: Vec<(&str, Vec<f64>)> = runs
        .iter()
        .map(|(name, requests)| {
            let mut latencies: Vec<f64> =
                requests.iter().filter(|r| !r.warmup && r.outcome == "succeeded").map(|r| r.latency_ms / 1000.0).collect();
            latencies.sort_by(f64::total_cmp);
            (*name, latencies)
        })
        .collect();
    let max = series.iter().flat_map(|(_, l)| l.last()).copied().fold(0.0, f64::max).max(0.001) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("latency CDF (succeeded requests)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max, 0f64..1f64)
            .map_err(error)?;
        chart.configure_mesh().x_desc("latency (s)").y_desc("fraction of requests").draw().map_err(error)?;
        for (i, (name, latencies)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let n = latencies.len() as f64;
            let steps = latencies.iter().enumerate().flat_map(|(k, l)| [(*l, k as f64 / n), (*l, (k + 1) as f64 / n)]);
            chart
                .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
                .map_err(error)?
                .label(format!("{name} (n={})", latencies.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw().map_err(error)?;
        root.present().map_err(error)?;
    }
    Ok(svg)
}

/// Each measured request's latency at the time it started.
pub fn latency_over_time(requests: &[RequestRecord]) -> Plot {
    let points: Vec<(f64, f64, bool)> = requests
        .iter()
        .filter(|r| !r.warmup && !r.dropped)
        .map(|r| (r.started_s, r.latency_ms / 1000.0, r.outcome == "succeeded"))
        .collect();
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("latency over time", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)
            .map_err(error)?;
        chart.configure_mesh().x_desc("start (s into the run)").y_desc("latency (s)").draw().map_err(error)?;
        for (succeeded, colour, label) in [(true, COLOURS[0], "succeeded"), (false, COLOURS[3], "failed")] {
            let chosen: Vec<(f64, f64)> = points.iter().filter(|p| p.2 == succeeded).map(|p| (p.0, p.1)).collect();
            if chosen.is_empty() {
                continue;
            }
            chart
                .draw_series(chosen.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                .map_err(error)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(error)?;
        root.present().map_err(error)?;
    }
    Ok(svg)
}

/// Per function: the median time inside it (run) and outside it (gateway,
/// queueing, cold start, transfer), stacked, over measured invocations.
pub fn stages(invocations: &[InvocationRecord]) -> Plot {
    let mut by_function: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for invocation in invocations.iter().filter(|i| !i.warmup && !i.mismatch) {
        let entry = by_function.entry(&invocation.function).or_default();
        entry.0.push(invocation.duration_ms / 1000.0);
        entry.1.push(invocation.outside_ms / 1000.0);
    }
    let bars: Vec<(&str, f64, f64)> = by_function.iter().map(|(f, (run, outside))| (*f, median(run), median(outside))).collect();
    let max = bars.iter().map(|b| b.1 + b.2).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let names: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("per function: median time inside and outside the function", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(50)
            .build_cartesian_2d((0..bars.len().max(1)).into_segmented(), 0f64..max)
            .map_err(error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len().max(1) + 1)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("seconds")
            .draw()
            .map_err(error)?;
        let bar = |i: usize, from: f64, to: f64, colour: RGBColor| {
            let mut rectangle = Rectangle::new([(SegmentValue::Exact(i), from), (SegmentValue::Exact(i + 1), to)], colour.filled());
            rectangle.set_margin(0, 0, 12, 12);
            rectangle
        };
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| bar(i, 0.0, b.1, COLOURS[0])))
            .map_err(error)?
            .label("inside (duration)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], COLOURS[0].filled()));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| bar(i, b.1, b.1 + b.2, COLOURS[1])))
            .map_err(error)?
            .label("outside (gateway, queue, start)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], COLOURS[1].filled()));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(error)?;
        root.present().map_err(error)?;
    }
    Ok(svg)
}

/// Where the time of the median and of the slowest succeeded request went:
/// one row per invocation on the request's own time axis, each its wait
/// (429 pauses and the gateway's queue, cold starts included), its run (the
/// function's own duration) and the rest of its call (transfer, gateway).
pub fn waterfall(requests: &[RequestRecord], invocations: &[InvocationRecord]) -> Plot {
    let mut succeeded: Vec<&RequestRecord> = requests.iter().filter(|r| !r.warmup && r.outcome == "succeeded").collect();
    succeeded.sort_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms));
    let mut chosen: Vec<(&str, &RequestRecord)> = Vec::new();
    if let Some(median) = succeeded.get(succeeded.len().saturating_sub(1) / 2) {
        chosen.push(("median", median));
    }
    if let Some(slowest) = succeeded.last().filter(|s| chosen.first().is_none_or(|(_, m)| m.request_id != s.request_id)) {
        chosen.push(("slowest", slowest));
    }
    let panels: Vec<(String, Vec<&InvocationRecord>)> = chosen
        .iter()
        .map(|(which, request)| {
            let mut rows: Vec<&InvocationRecord> = invocations.iter().filter(|i| i.request_id == request.request_id).collect();
            rows.sort_by(|a, b| a.started_ms.total_cmp(&b.started_ms));
            (format!("{which} request {} ({:.2} s)", request.request_id, request.latency_ms / 1000.0), rows)
        })
        .collect();
    const ROW: u32 = 16;
    let heights: Vec<u32> = panels.iter().map(|(_, rows)| 90 + ROW * rows.len().max(1) as u32).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0 + 160, heights.iter().sum::<u32>().max(120))).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        if panels.is_empty() {
            root.draw_text("no succeeded request to draw", &("sans-serif", 16).into_text_style(&root), (20, 50)).map_err(error)?;
        }
        let mut rest = root.clone();
        for ((title, rows), height) in panels.iter().zip(&heights) {
            let (area, below) = rest.split_vertically(*height);
            rest = below;
            let end = |i: &InvocationRecord| (i.started_ms + i.paused_ms + i.elapsed_ms) / 1000.0;
            let max = rows.iter().map(|i| end(i)).fold(0.0, f64::max).max(0.001) * 1.02;
            let labels: Vec<String> =
                rows.iter().map(|i| if i.scope.is_empty() { i.function.clone() } else { format!("{} {}", i.function, i.scope) }).collect();
            let mut chart = ChartBuilder::on(&area)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(210)
                .build_cartesian_2d(0f64..max, (0..rows.len().max(1)).into_segmented())
                .map_err(error)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(rows.len().max(1) + 1)
                .y_label_formatter(&|y| match y {
                    SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .x_desc("seconds since the request started")
                .draw()
                .map_err(error)?;
            let bar = |row: usize, from: f64, to: f64, colour: RGBColor| {
                let mut rectangle = Rectangle::new([(from, SegmentValue::Exact(row)), (to, SegmentValue::Exact(row + 1))], colour.filled());
                rectangle.set_margin(2, 2, 0, 0);
                rectangle
            };
            let parts = |i: &InvocationRecord| {
                let start = i.started_ms / 1000.0;
                let waited = start + (i.paused_ms + i.queued_ms.unwrap_or(0.0)) / 1000.0;
                let ran = waited + i.duration_ms / 1000.0;
                (start, waited, ran, end(i).max(ran))
            };
            // Each series' span of an invocation's (start, waited, ran, end).
            type Span = fn((f64, f64, f64, f64)) -> (f64, f64);
            let series: [(&str, RGBColor, Span); 3] = [
                ("waiting (429 pauses, gateway queue, cold start)", COLOURS[1], |p| (p.0, p.1)),
                ("running (the function's duration)", COLOURS[0], |p| (p.1, p.2)),
                ("rest of the call (transfer, gateway)", RGBColor(170, 170, 170), |p| (p.2, p.3)),
            ];
            for (name, colour, span) in series {
                chart
                    .draw_series(rows.iter().enumerate().map(|(row, i)| {
                        let (from, to) = span(parts(i));
                        bar(row, from, to, colour)
                    }))
                    .map_err(error)?
                    .label(name)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft).draw().map_err(error)?;
        }
        root.present().map_err(error)?;
    }
    Ok(svg)
}

/// Each succeeded request's cost (seconds × declared GB) against its latency.
pub fn cost_against_latency(requests: &[RequestRecord]) -> Plot {
    let points: Vec<(f64, f64)> =
        requests.iter().filter(|r| !r.warmup && r.outcome == "succeeded").map(|r| (r.latency_ms / 1000.0, r.cost_unit)).collect();
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(0.001) * 1.1;
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("cost against latency", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)
            .map_err(error)?;
        chart.configure_mesh().x_desc("latency (s)").y_desc("cost (s × GB declared)").draw().map_err(error)?;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, COLOURS[2].filled()))).map_err(error)?;
        root.present().map_err(error)?;
    }
    Ok(svg)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
