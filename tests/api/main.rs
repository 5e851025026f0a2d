//! The integration suite: one binary, every test on its own service, database and store.

mod access;
mod access_table;
mod admin;
mod browser;
mod cli;
mod clients;
mod flow;
mod helpers;
mod legacy;
mod lifecycle;
mod limits;
mod metrics;
mod multipart;
mod openapi;
mod reach;
mod replicas;
mod round_trips;
mod security;
mod storage_events;
mod tus;
mod validation;
mod variants;
mod verification;
mod webhooks;
