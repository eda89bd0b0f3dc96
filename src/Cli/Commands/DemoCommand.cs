using System.CommandLine;
using Gateway.Cli.Demo;

namespace Gateway.Cli.Commands;

/// <summary>`gateway demo`: the two-node encrypted overlay with policy, on this machine (root).</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var command = new Command("demo",
            "Run the built-in demo: two nodes and four pods in network namespaces, gateway up in overlay mode on both, " +
            "CiliumNetworkPolicy (frontend may reach backend on TCP 80; other flows are denied), real ping and HTTP traffic, " +
            "the flow log, and an audit of the underlay capture. Needs root; removes everything it made.");
        command.SetAction(parse => ClusterDemo.Run(parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }
}
