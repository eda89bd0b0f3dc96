using System.CommandLine;

namespace Gateway.Cli;

/// <summary>The subcommands of `gateway`, in the order `--help` lists them.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return Commands.UpCommand.Create();
        yield return Commands.ShowCommand.Create();
        yield return Commands.AuditCommand.Create();
    }
}
