using System.CommandLine;

namespace Gateway.Cli;

/// <summary>The subcommands of `gateway`, in the order `--help` lists them.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return Commands.DemoCommand.Create();
        yield return Commands.UpCommand.Create();
        yield return Commands.DownCommand.Create();
        yield return Commands.ShowCommand.Create();
        yield return GenKeyCommand.Create();
        yield return PubKeyCommand.Create();
        yield return GenPskCommand.Create();
        yield return SelfTestCommand.Create();
        yield return Commands.AuditCommand.Create();
        yield return PolicyCommand.Create();
        yield return ServiceCommand.Create();
        yield return BandwidthCommand.Create();
        yield return Commands.ClusterCommand.Create();
        yield return Commands.ObserveCommand.Create();
        yield return Commands.ReplayCommand.Create();
    }
}
