//! Embeds every file of `frontend/` in the binary, so the release build serves the page
//! with no files beside it.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("frontend");
    println!("cargo:rerun-if-changed=frontend");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("frontend/ exists")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    let mut table = String::from("&[\n");
    for name in &names {
        println!("cargo:rerun-if-changed=frontend/{name}");
        let path = std::fs::canonicalize(dir.join(name)).expect("frontend file");
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?}) as &[u8]),",
            path.display()
        )
        .expect("write to string");
    }
    table.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("frontend_files.rs");
    std::fs::write(out, table).expect("write frontend table");
}
