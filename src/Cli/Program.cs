using System.CommandLine;
using Gateway.Cli;

// The command line is a thin shell over Gateway.Node and the libraries below it.
// Each command lives in Commands/<Name>Command.cs and exposes `static Command Create()`.
// User mistakes surface as CliException: one line on stderr and a chosen exit code,
// never a stack trace.
var root = new RootCommand(
    "gateway - userspace WireGuard tunnel, VXLAN overlay and identity-based policy engine.");
foreach (var command in CommandCatalog.All())
{
    root.Subcommands.Add(command);
}

return CliRunner.Run(root, args);
