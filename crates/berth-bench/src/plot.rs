//! `--scale-plot FILE`: the scale curves as one SVG, a log-log panel per curve (time against
//! size, one line per request), so a slope is visible at a glance: a flat line is a paginated
//! read that does not grow, a line parallel to the dotted one grows linearly. Written by hand:
//! a few lines and text elements need no plotting library.

use std::fmt::Write as _;

use crate::scale::Curve;

const PANEL_WIDTH: f64 = 460.0;
const PANEL_HEIGHT: f64 = 300.0;
/// Left, top, right and bottom margins of a panel's plotting area.
const MARGIN: (f64, f64, f64, f64) = (60.0, 34.0, 28.0, 96.0);
const PANELS_PER_ROW: usize = 2;
/// Line colours, one per request of a curve (cycled).
const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/// The SVG document drawing `curves`.
pub fn svg(curves: &[Curve]) -> String {
    let rows = curves.len().div_ceil(PANELS_PER_ROW).max(1);
    let (width, height) = (PANEL_WIDTH * PANELS_PER_ROW as f64, PANEL_HEIGHT * rows as f64);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, curve) in curves.iter().enumerate() {
        let x = PANEL_WIDTH * (i % PANELS_PER_ROW) as f64;
        let y = PANEL_HEIGHT * (i / PANELS_PER_ROW) as f64;
        panel(&mut out, curve, x, y);
    }
    out.push_str("</svg>\n");
    out
}

/// Decades spanning `values` (all > 0): the lowest and highest power of ten, as exponents.
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return (0, 1);
    }
    let (low, high) = (low.log10().floor() as i32, high.log10().ceil() as i32);
    (low, high.max(low + 1))
}

fn panel(out: &mut String, curve: &Curve, x0: f64, y0: f64) {
    let (left, top, right, bottom) = MARGIN;
    let (plot_w, plot_h) = (PANEL_WIDTH - left - right, PANEL_HEIGHT - top - bottom);
    let sizes = curve.rows.iter().map(|(size, _, _)| *size as f64).filter(|s| *s > 0.0);
    let times = curve.rows.iter().flat_map(|(_, times, _)| times.iter().copied()).filter(|t| *t > 0.0);
    let (x_low, x_high) = decades(sizes);
    let (y_low, y_high) = decades(times);
    let px = |size: f64| x0 + left + (size.log10() - x_low as f64) / (x_high - x_low) as f64 * plot_w;
    let py = |ms: f64| y0 + top + plot_h - (ms.log10() - y_low as f64) / (y_high - y_low) as f64 * plot_h;
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        x0 + left,
        y0 + 20.0,
        escape(&curve.title)
    );
    for e in x_low..=x_high {
        let x = px(10f64.powi(e));
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">10^{e}</text>",
            y0 + top,
            y0 + top + plot_h,
            y0 + top + plot_h + 14.0
        );
    }
    for e in y_low..=y_high {
        let y = py(10f64.powi(e));
        let label = 10f64.powi(e);
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label} ms</text>",
            x0 + left,
            x0 + left + plot_w,
            x0 + left - 4.0,
            y + 4.0
        );
    }
    // A slope-1 reference through the panel's lower left corner: linear growth runs parallel.
    let span = ((x_high - x_low) as f64).min((y_high - y_low) as f64);
    let _ = writeln!(
        out,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"3,3\"/>",
        px(10f64.powi(x_low)),
        py(10f64.powi(y_low)),
        px(10f64.powf(x_low as f64 + span)),
        py(10f64.powf(y_low as f64 + span))
    );
    for (i, column) in curve.columns.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = curve
            .rows
            .iter()
            .filter(|(size, times, _)| *size > 0 && times[i] > 0.0)
            .map(|(size, times, _)| format!("{:.1},{:.1}", px(*size as f64), py(times[i])))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for point in &points {
            let (x, y) = point.split_once(',').expect("x,y");
            let _ = writeln!(out, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>");
        }
        let slope = curve.slope(i).map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
        let legend_y = y0 + top + plot_h + 30.0 + 14.0 * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} (slope {slope})</text>",
            x0 + left,
            legend_y - 4.0,
            x0 + left + 18.0,
            legend_y - 4.0,
            x0 + left + 24.0,
            legend_y,
            escape(column)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_a_line_through_its_points() {
        let mut curve = Curve::new("tags <SQLite>".into(), vec!["tags/list?n=100", "every tag"], "RSS");
        curve.rows =
            vec![(100, vec![0.3, 1.0], 17.0), (1_000, vec![0.3, 10.0], 18.0), (10_000, vec![0.3, 100.0], 19.0)];
        let svg = svg(&[curve]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("tags &lt;SQLite&gt;"), "titles are escaped");
        assert!(svg.contains("every tag (slope 1.00)") && svg.contains("tags/list?n=100 (slope 0.00)"));
        // The flat line's three points share one y; the linear one climbs a panel's decade per point.
        let flat = svg.split("<polyline").nth(1).unwrap();
        let ys: Vec<&str> = flat
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap())
            .collect();
        assert_eq!(ys.len(), 3);
        assert!(ys.iter().all(|y| *y == ys[0]), "{ys:?}");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
