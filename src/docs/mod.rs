//! Reference pages made from the project's own text. The configuration reference is written
//! once, as Markdown in `docs/config.md` (every section and key, its default and meaning,
//! with examples): the repository shows it as a web page, and `sinkhole man` renders the same
//! text as `sinkhole.toml(5)` ([`roff`]), so that the page and the man page never disagree.
//! The command pages come from the clap definitions (`cli::man`).

pub mod roff;

/// The configuration reference, `docs/config.md`.
pub const CONFIG_REFERENCE: &str = include_str!("../../docs/config.md");

/// The commented example config, as shipped.
pub const EXAMPLE_CONFIG: &str = include_str!("../../sinkhole.example.toml");

/// `sinkhole.toml(5)` in roff, rendered from `reference` (the Markdown of `docs/config.md`):
/// its `##` sections become the page's sections. `version` goes in the header.
pub fn config_manpage(reference: &str, version: &str) -> String {
    let mut out = format!(
        ".TH SINKHOLE.TOML 5 \"\" \"sinkhole {version}\" \"File Formats\"\n\
         .SH NAME\nsinkhole.toml \\- configuration of the sinkhole filtering DNS resolver\n\
         .SH SYNOPSIS\n/etc/sinkhole/sinkhole.toml\n\
         .SH DESCRIPTION\n"
    );
    out.push_str(&roff::to_roff(reference));
    out.push_str(
        ".SH FILES\n.TP\n/etc/sinkhole/sinkhole.toml\nThe service's config (the Debian package's conffile).\n\
         .TP\n/usr/share/doc/sinkhole/examples/sinkhole.example.toml\nEvery key with its default, commented.\n\
         .SH SEE ALSO\n\\fBsinkhole\\fR(1), \\fBsinkhole\\-serve\\fR(1), \\fBsinkhole\\-config\\fR(1), \
         \\fBsinkhole\\-firewall\\fR(1)\n",
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
