//! `cnn examples [NAME] [--out DIR [--force]]`: the networks built into the binary, which
//! every command taking a CONFIG accepts by name (`cnn train report1-10`).

use std::path::PathBuf;

use clap::Args;
use cnn::examples::{self, EXAMPLES};

use super::{say_written, CmdResult, Failure};

#[derive(Debug, Args)]
#[command(
    after_help = "Every command that takes a CONFIG takes these names too, from any \
    folder (a file of that name wins).\n\n\
    Examples:\n  \
    cnn examples lenet            (its config text)\n  \
    cnn examples --out my-nets    (each as NAME.cfg, to edit)\n  \
    cnn train report1-10"
)]
pub struct ExamplesArgs {
    /// Print this example's config text.
    #[arg(conflicts_with = "out")]
    name: Option<String>,
    /// Write every example into this folder as NAME.cfg.
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --out: replace example files already there.
    #[arg(long, requires = "out")]
    force: bool,
}

pub fn run(args: ExamplesArgs) -> CmdResult {
    if let Some(name) = &args.name {
        let Some(e) = examples::find(name) else {
            return Err(Failure::Usage(format!(
                "no built-in example is called `{name}`; they are {}",
                examples::names()
            )));
        };
        print!("{}", e.text);
        return Ok(());
    }
    let Some(dir) = &args.out else {
        let width = EXAMPLES.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for e in EXAMPLES {
            println!("{:<width$}  {}", e.name, e.description);
        }
        println!(
            "\nUse a name wherever a CONFIG goes (cnn train report1-10, cnn summary lenet); \
             cnn examples NAME prints one, --out DIR writes them all."
        );
        return Ok(());
    };
    // Everything is checked before anything is written.
    if dir.exists() && !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{}: exists and is not a folder",
            dir.display()
        )));
    }
    let there: Vec<String> = EXAMPLES
        .iter()
        .map(|e| e.file_name())
        .filter(|f| dir.join(f).exists())
        .collect();
    if !there.is_empty() && !args.force {
        return Err(Failure::Usage(format!(
            "{}: holds {} already; pass --force to replace {}, or choose another folder",
            dir.display(),
            there.join(", "),
            if there.len() == 1 { "it" } else { "them" }
        )));
    }
    cnn::io::create_dir(dir)?;
    for e in EXAMPLES {
        let path = dir.join(e.file_name());
        cnn::io::write_atomic(&path, e.text.as_bytes())?;
    }
    say_written(
        &dir.join(EXAMPLES[0].file_name()),
        &format!(
            "wrote {} examples to {}: {}",
            EXAMPLES.len(),
            dir.display(),
            EXAMPLES
                .iter()
                .map(|e| e.file_name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(())
}
