using System.CommandLine;
using Gateway.Cli.Demo;

namespace Gateway.Cli.Commands;

/// <summary>`gateway demo`: the two-node encrypted overlay with policy, on this machine (root);
/// `gateway demo --cluster`: cluster mode on etcd with four nodes.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var command = new Command("demo",
            "Run the built-in demo: two nodes and four pods in network namespaces, gateway up in overlay mode on both, " +
            "CiliumNetworkPolicy (frontend may reach backend on TCP 80; other flows are denied), real ping and HTTP traffic, " +
            "the flow log, and an audit of the underlay capture. Needs root; removes everything it made.");
        var cluster = new Option<bool>("--cluster")
        {
            Description = "Cluster mode instead: a real etcd and three nodes configured only with their own pods and the etcd " +
                          "address; traffic across all pairs, a policy applied through etcd, a fourth node joining live, one node " +
                          "killed and removed, the underlay audited.",
        };
        command.Options.Add(cluster);
        command.SetAction(parse => parse.GetValue(cluster)
            ? KvClusterDemo.Run(parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error)
            : ClusterDemo.Run(parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }
}
