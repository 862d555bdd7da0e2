//! # millrace-clidocs
//!
//! Man pages and shell completions generated from the binaries' clap definitions, so
//! they can never disagree with `--help`.
//!
//! Every binary (`channeld`, `channelctl`, `channel-agent`, `channel-bench`) calls
//! [`write_if_requested`] first thing: with `MILLRACE_CLI_DOCS_DIR=DIR` in its environment
//! it writes, and exits without doing anything else,
//!
//! ```text
//! DIR/man/NAME.1 (and NAME-SUBCOMMAND.1 for each subcommand)   roff, clap_mangen
//! DIR/completions/bash/NAME                                    bash-completion
//! DIR/completions/zsh/_NAME                                    zsh
//! DIR/completions/fish/NAME.fish                               fish
//! ```
//!
//! The Debian package's build (`deploy/debian/build-deb.sh`) runs each binary so and
//! installs the result. An environment variable rather than a flag keeps the generator
//! out of every command line and its `--help`.

#![warn(missing_docs)]

use std::io;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// The environment variable that asks a binary for its man pages and completions.
pub const CLI_DOCS_ENV: &str = "MILLRACE_CLI_DOCS_DIR";

/// The shells completions are written for, with the directory and the file name each
/// one's completion loader looks for (bash-completion: the command's name; zsh: `_NAME`;
/// fish: `NAME.fish`).
#[allow(clippy::type_complexity)]
const SHELLS: [(Shell, &str, fn(&str) -> String); 3] = [
    (Shell::Bash, "bash", |name| name.to_string()),
    (Shell::Zsh, "zsh", |name| format!("_{name}")),
    (Shell::Fish, "fish", |name| format!("{name}.fish")),
];

/// When [`CLI_DOCS_ENV`] is set, writes the man pages and completions of `T`'s command
/// under it and exits (0, or 1 saying why it could not).
pub fn write_if_requested<T: CommandFactory>() {
    let Some(dir) = std::env::var_os(CLI_DOCS_ENV) else {
        return;
    };
    let command = T::command();
    let name = command.get_name().to_string();
    match write_cli_docs(command, Path::new(&dir)) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!(
                "{name}: cannot write man pages and completions to {}: {error}",
                Path::new(&dir).display()
            );
            std::process::exit(1);
        }
    }
}

/// Writes `command`'s man pages to `dir/man` and its completions to
/// `dir/completions/SHELL`.
pub fn write_cli_docs(command: clap::Command, dir: &Path) -> io::Result<()> {
    let man_dir = dir.join("man");
    std::fs::create_dir_all(&man_dir)?;
    clap_mangen::generate_to(command.clone(), &man_dir)?;
    let name = command.get_name().to_string();
    for (shell, shell_dir, file_name) in SHELLS {
        let completions = dir.join("completions").join(shell_dir);
        std::fs::create_dir_all(&completions)?;
        let mut file = std::fs::File::create(completions.join(file_name(&name)))?;
        clap_complete::generate(shell, &mut command.clone(), name.clone(), &mut file);
    }
    Ok(())
}
