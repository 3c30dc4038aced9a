//! HTTP/2 as a DNS-over-HTTPS client speaks it to an upstream, without I/O: the relay's
//! connections ([`crate::pipeline::upstream`]) feed it the server's bytes and send what it
//! writes. One request shape (a `POST` of a DNS message), so the header block is fixed (its
//! fields indexed in the server's table); of an answer's, only the status and type are read (with the dynamic table a server may keep
//! despite our settings); see [`client`] for why it is not the `h2` crate.
//!
//! - `client`: streams, flow control, settings, GOAWAY; the queries' outcomes.
//! - `frame`: the frame header, types, flags, settings.
//! - `hpack`: `:status` and `content-type` of an answer's header block.
//! - `request`: the requests' header blocks, indexed in the server's table once it takes them.
//! - `huffman`: HPACK's Huffman code.
//! - `table`: the answers' HPACK dynamic table.

pub mod client;
mod frame;
pub mod hpack;
mod huffman;
pub mod request;
pub mod table;

pub use client::{Client, Event};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;
