//! Image variants (thumbnails and display sizes). `pipeline` makes them from an original's
//! bytes, pure.

pub mod pipeline;
pub mod worker;

pub use worker::spawn_variant_worker;
