//! The output options of the reporting commands (`-o json|table`), apart
//! from the rest of the command line so that `loadtest`, whose arguments
//! the command line embeds, can take them without importing it back.
/// `-o json|table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people: the runbook's tables and lines.
    #[default]
    Table,
    /// For scripts: one JSON document on stdout (shapes in the README).
    Json,
}

/// The output options of the reporting commands.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputArgs {
    /// Output format: table for people, json for scripts (one JSON
    /// document on stdout; the README documents each command's shape).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        value_name = "FORMAT",
        default_value_t = OutputFormat::Table
    )]
    pub output: OutputFormat,
    /// Same as `--output json` (kept for existing scripts).
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// Whether JSON was asked for (`-o json` or `--json`).
    pub fn is_json(&self) -> bool {
        self.json || self.output == OutputFormat::Json
    }
}
