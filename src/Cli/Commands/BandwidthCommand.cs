using System.CommandLine;
using Gateway.Datapath;
using Gateway.Node.Bandwidth;
using Gateway.Policy;

namespace Gateway.Cli;

/// <summary>
/// `gateway bandwidth list`: the pods' rate limits from their kubernetes.io/egress-bandwidth and
/// ingress-bandwidth annotations, as `cilium-dbg bpf bandwidth list` shows them. Like
/// `gateway service list` it reads the files, not a running daemon (the daemon loads the same
/// Endpoints file of [Overlay] and applies the limits of the pods in its PodCIDR). Malformed
/// annotations are reported on stderr with file, line and reason and left out, as the daemon does.
/// </summary>
internal static class BandwidthCommand
{
    public static Command Create()
    {
        var bandwidth = new Command("bandwidth", "Pod bandwidth limits (kubernetes.io/egress-bandwidth, kubernetes.io/ingress-bandwidth).");
        bandwidth.Subcommands.Add(CreateList());
        return bandwidth;
    }

    private static Command CreateList()
    {
        var endpointsOpt = new Option<string>("--endpoints") { Description = "Endpoints YAML file (name, namespace, ips, labels, annotations).", Required = true };
        var podCidrOpt = new Option<string[]>("--pod-cidr") { Description = "Only pods in this CIDR (a node's PodCIDR: what that node enforces); repeatable." };
        var jsonOpt = new Option<bool>("--json") { Description = "Print the limits as JSON." };
        var cmd = new Command("list", "Print each pod with a limit: endpoint, identity, direction and rate in bits per second.")
        {
            endpointsOpt, podCidrOpt, jsonOpt,
        };
        cmd.SetAction(parse =>
        {
            EndpointTable endpoints;
            try
            {
                endpoints = EndpointFile.Load(parse.GetValue(endpointsOpt)!, new IdentityAllocator());
            }
            catch (Exception e) when (e is PolicyLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
            {
                throw new CliException(e.Message);
            }
            var cidrs = new List<IpPrefix>();
            foreach (string text in parse.GetValue(podCidrOpt) ?? [])
            {
                if (!IpPrefix.TryParse(text, out var prefix))
                {
                    throw new CliException($"--pod-cidr: '{text}' is not a CIDR");
                }
                cidrs.Add(prefix);
            }
            foreach (string warning in endpoints.Warnings)
            {
                parse.InvocationConfiguration.Error.WriteLine($"warning: {warning}");
            }
            var rows = BandwidthListing.Entries(endpoints, cidrs.Count == 0 ? null : cidrs);
            var output = parse.InvocationConfiguration.Output;
            output.Write(parse.GetValue(jsonOpt) ? BandwidthListing.ToJson(rows) + Environment.NewLine : BandwidthListing.ToText(rows));
            return 0;
        });
        return cmd;
    }
}
