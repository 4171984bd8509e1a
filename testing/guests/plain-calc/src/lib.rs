//! A plain component: it exports ordinary functions and knows nothing of
//! toolcell. The tests check that each becomes a tool whose schemas follow
//! its WIT types, and that JSON goes in and out of every kind of type.

wit_bindgen::generate!({
    inline: r#"
        package toolcell-test:calc;

        interface geometry {
            record point { x: s32, y: s32 }
            variant shape { circle(u32), rect(tuple<point, point>), empty }
            enum unit { mm, cm, m }
            flags style { bold, dashed }

            area: func(s: shape, unit: unit) -> string;
            midpoint: func(a: point, b: point) -> point;
            styled: func(style: style) -> list<string>;
        }

        world calc {
            export add: func(a: u8, b: u8) -> u16;
            export divide: func(a: s32, b: s32) -> result<s32, string>;
            export find: func(items: list<string>, needle: option<string>) -> option<u32>;
            export swap: func(pair: tuple<bool, f64>) -> tuple<f64, bool>;
            export geometry;
        }
    "#,
});

use exports::toolcell_test::calc::geometry::{Guest as Geometry, Point, Shape, Style, Unit};

struct Calc;

impl Guest for Calc {
    fn add(a: u8, b: u8) -> u16 {
        u16::from(a) + u16::from(b)
    }

    fn divide(a: i32, b: i32) -> Result<i32, String> {
        a.checked_div(b).ok_or_else(|| format!("cannot divide {a} by {b}"))
    }

    fn find(items: Vec<String>, needle: Option<String>) -> Option<u32> {
        let needle = needle?;
        items.iter().position(|item| *item == needle).map(|i| i as u32)
    }

    fn swap(pair: (bool, f64)) -> (f64, bool) {
        (pair.1, pair.0)
    }
}

impl Geometry for Calc {
    fn area(s: Shape, unit: Unit) -> String {
        let unit = match unit {
            Unit::Mm => "mm",
            Unit::Cm => "cm",
            Unit::M => "m",
        };
        match s {
            Shape::Circle(r) => format!("{:.2} {unit}²", std::f64::consts::PI * f64::from(r) * f64::from(r)),
            Shape::Rect((a, b)) => format!("{} {unit}²", ((b.x - a.x) * (b.y - a.y)).abs()),
            Shape::Empty => format!("0 {unit}²"),
        }
    }

    fn midpoint(a: Point, b: Point) -> Point {
        Point { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 }
    }

    fn styled(style: Style) -> Vec<String> {
        let mut names = Vec::new();
        if style.contains(Style::BOLD) {
            names.push("bold".to_owned());
        }
        if style.contains(Style::DASHED) {
            names.push("dashed".to_owned());
        }
        names
    }
}

export!(Calc);
