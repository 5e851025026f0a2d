//! Schema migrations, written with SeaQuery builders so they run on SQLite and Postgres.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_uploads;
mod m20261128_000002_part_checksums;
mod m20261201_000001_link_ids;
mod m20261201_000002_lookup_index_id;
mod m20261204_000001_link_uses;
mod m20261205_000001_webhooks;
mod m20261206_000001_variants;
mod m20261207_000001_operators;
mod seed_import;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_uploads::Migration),
            Box::new(m20261128_000002_part_checksums::Migration),
            Box::new(m20261201_000001_link_ids::Migration),
            Box::new(m20261201_000002_lookup_index_id::Migration),
            Box::new(m20261204_000001_link_uses::Migration),
            Box::new(m20261205_000001_webhooks::Migration),
            Box::new(m20261206_000001_variants::Migration),
            Box::new(m20261207_000001_operators::Migration),
        ]
    }
}
