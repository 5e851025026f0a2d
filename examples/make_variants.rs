//! Makes an image's variants as the service does, as one process (for the variants
//! benchmark: timed beside vipsthumbnail and the other peers on the same files).
//!
//!     cargo run --release --example make_variants -- INPUT OUTPUT_DIR [PRESETS] [FORMATS]
//!
//! PRESETS defaults to `thumb:256,display:1280` and FORMATS to `webp,jpeg`; `thumb:256 jpeg`
//! makes only thumb.jpeg, the one file of a peer that makes a file per run.

use upload_broker::variants::pipeline::{self, Limits, Preset, VariantFormat};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: make_variants INPUT OUTPUT_DIR [name:px,...] [webp,jpeg]");
        std::process::exit(2);
    };
    let presets: Vec<Preset> = args
        .get(3)
        .map_or("thumb:256,display:1280", String::as_str)
        .split(',')
        .filter_map(|p| {
            let (name, px) = p.split_once(':')?;
            Some(Preset {
                name: name.to_owned(),
                longest: px.parse().ok()?,
            })
        })
        .collect();
    let formats: Vec<VariantFormat> = args
        .get(4)
        .map_or("webp,jpeg", String::as_str)
        .split(',')
        .filter_map(VariantFormat::parse)
        .collect();
    let bytes = std::fs::read(input).expect("read the input");
    let limits = Limits {
        max_pixels: 50_000_000,
        max_memory: 512 * 1024 * 1024,
    };
    let made = pipeline::make(&bytes, &presets, &formats, limits).expect("variants");
    for variant in made {
        let path = format!("{out}/{}.{}", variant.preset, variant.format.extension());
        std::fs::write(&path, &variant.bytes).expect("write");
        println!(
            "{path} {}x{} {} B",
            variant.width,
            variant.height,
            variant.bytes.len()
        );
    }
}
