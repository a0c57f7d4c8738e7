//! SVG line charts of a run (`--plot DIR`), drawn with `plotters`' SVG backend (no fonts or
//! system libraries needed: the text is left to the viewer).

use std::path::Path;

use plotters::prelude::*;

use crate::units::bytes;

/// One line: a name and its (message size, value) points.
pub(crate) type Series = (&'static str, Vec<(usize, f64)>);

const COLORS: [RGBColor; 12] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0x63, 0x79, 0x39),
];

/// Draws `series` into `path`: message sizes on a categorical x axis, values on a log-scale
/// y axis labelled with `fmt`, one line per series with a legend.
pub(crate) fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
    fmt: fn(f64) -> String,
) -> Result<(), String> {
    let mut sizes: Vec<usize> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let values = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|x| e(&x))?;
    if sizes.is_empty() || lo > hi {
        root.draw(&Text::new(
            format!("{title}: no data"),
            (10, 20),
            ("sans-serif", 14),
        ))
        .map_err(|x| e(&x))?;
        return root.present().map_err(|x| e(&x));
    }
    let (lmin, lmax) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
    );
    let index = |s: usize| sizes.iter().position(|&z| z == s).unwrap_or(0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(
            -0.25f64..(sizes.len() as f64 - 0.75),
            (lmin..lmax).log_scale(),
        )
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_labels(sizes.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                sizes
                    .get(i as usize)
                    .map_or(String::new(), |&s| bytes(s as f64))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| fmt(*y))
        .x_desc("message size")
        .y_desc(format!("{y_label} (log scale)"))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .map(|&(s, v)| (index(s) as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
