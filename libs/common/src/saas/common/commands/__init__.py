"""Built-in subcommands of `saas`."""
