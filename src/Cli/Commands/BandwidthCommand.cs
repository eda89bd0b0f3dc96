using System.CommandLine;
using Gateway.Cli.Commands;
using Gateway.Cluster;
using Gateway.Datapath;
using Gateway.Node.Bandwidth;
using Gateway.Policy;

namespace Gateway.Cli;

/// <summary>
/// `gateway bandwidth`: the pods' rate limits from their kubernetes.io/egress-bandwidth and
/// ingress-bandwidth annotations. `list` prints them as `cilium-dbg bpf bandwidth list` does, from
/// an endpoints file (what a node loads with `Endpoints =`), from etcd (cluster mode), or from both
/// merged as a node in cluster mode applies them; it reads files and the store, not a running
/// daemon. `apply` and `delete` store and remove pods' annotations in etcd, where every node of
/// the cluster picks them up. Malformed annotations in a listed file are reported on stderr with
/// file, line and reason and left out, as the daemon does; `apply` refuses them.
/// </summary>
internal static class BandwidthCommand
{
    public static Command Create()
    {
        var bandwidth = new Command("bandwidth", "Pod bandwidth limits (kubernetes.io/egress-bandwidth, kubernetes.io/ingress-bandwidth): list them; store them in etcd.");
        bandwidth.Subcommands.Add(CreateList());
        bandwidth.Subcommands.Add(CreateApply());
        bandwidth.Subcommands.Add(CreateDelete());
        return bandwidth;
    }

    private static Command CreateApply()
    {
        var filesArg = new Argument<string[]>("FILE")
        {
            Description = "Endpoints YAML files (the format of Endpoints =): each pod's kubernetes.io/egress-bandwidth and ingress-bandwidth annotations are stored; a pod without either has its stored limits removed.",
            Arity = ArgumentArity.OneOrMore,
        };
        var kv = new KvStoreCliOptions();
        var cmd = new Command("apply", "Store pods' bandwidth annotations in etcd; the node of each pod enforces them, overriding its Endpoints file's. All or nothing.") { filesArg };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            var options = kv.Parse(parse);
            IReadOnlyList<BandwidthRecord> records;
            try
            {
                records = BandwidthRecords.Load(parse.GetValue(filesArg)!);
            }
            catch (Exception e) when (e is PolicyLoadException or FormatException or IOException or UnauthorizedAccessException or InvalidDataException)
            {
                throw new CliException(e.Message);
            }
            if (records.Count == 0)
            {
                throw new CliException("no pods in the given files");
            }
            var output = parse.InvocationConfiguration.Output;
            return KvStoreCliOptions.RunStore(options, Open, async (store, ct) =>
            {
                var cleared = await store.ApplyAsync(records, ct);
                foreach (var r in records)
                {
                    if (r.Egress is not null || r.Ingress is not null)
                    {
                        output.WriteLine($"stored bandwidth {r.Name}: egress {r.Egress ?? "-"}, ingress {r.Ingress ?? "-"}");
                    }
                    else
                    {
                        output.WriteLine(cleared.Contains(r.Name)
                            ? $"cleared bandwidth {r.Name}"
                            : $"no bandwidth annotation on {r.Name}: nothing stored");
                    }
                }
                return 0;
            });
        });
        return cmd;
    }

    private static Command CreateDelete()
    {
        var nameArg = new Argument<string>("NAMESPACE/NAME") { Description = "The pod whose stored limits go, e.g. default/uploader." };
        var kv = new KvStoreCliOptions();
        var cmd = new Command("delete", "Delete a pod's bandwidth annotations stored in etcd; its node falls back to its Endpoints file's.") { nameArg };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            string name = parse.GetValue(nameArg)!;
            if (!BandwidthRecords.IsValidName(name))
            {
                throw new CliException($"'{name}' is not NAMESPACE/NAME (e.g. default/uploader)");
            }
            var options = kv.Parse(parse);
            var output = parse.InvocationConfiguration.Output;
            return KvStoreCliOptions.RunStore(options, Open, async (store, ct) =>
            {
                if (!await store.DeleteAsync(name, ct))
                {
                    throw new CliException($"no stored bandwidth limits for {name}", exitCode: 1);
                }
                output.WriteLine($"deleted bandwidth {name}");
                return 0;
            });
        });
        return cmd;
    }

    private static BandwidthStore Open(KvStoreOptions options) => BandwidthStore.Open(options, _ => { });

    private static Command CreateList()
    {
        var endpointsOpt = new Option<string>("--endpoints") { Description = "Endpoints YAML file (name, namespace, ips, labels, annotations)." };
        var podCidrOpt = new Option<string[]>("--pod-cidr") { Description = "Only pods in this CIDR (a node's PodCIDR: what that node enforces); repeatable." };
        var jsonOpt = new Option<bool>("--json") { Description = "Print the limits as JSON." };
        var kv = new KvStoreCliOptions(required: false);
        var cmd = new Command("list", "Print each pod with a limit: endpoint, identity, direction and rate in bits per second. " +
            "With --endpoints, the file's annotations; with --kvstore, those stored in etcd; with both, the file's pods with the stored limits overriding theirs, as a node applies them.")
        {
            endpointsOpt, podCidrOpt, jsonOpt,
        };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            string? endpointsPath = parse.GetValue(endpointsOpt);
            if (endpointsPath is null && !kv.IsGiven(parse))
            {
                throw new CliException("give --endpoints FILE, --kvstore URL, or both");
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
            EndpointTable? endpoints = null;
            if (endpointsPath is not null)
            {
                try
                {
                    endpoints = EndpointFile.Load(endpointsPath, new IdentityAllocator());
                }
                catch (Exception e) when (e is PolicyLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    throw new CliException(e.Message);
                }
            }
            else if (cidrs.Count > 0)
            {
                throw new CliException("--pod-cidr needs --endpoints (the store holds no addresses)");
            }
            var error = parse.InvocationConfiguration.Error;
            foreach (string warning in endpoints?.Warnings ?? [])
            {
                error.WriteLine($"warning: {warning}");
            }
            IReadOnlyList<BandwidthEntry> rows;
            if (!kv.IsGiven(parse))
            {
                rows = BandwidthListing.Entries(endpoints!, cidrs.Count == 0 ? null : cidrs);
            }
            else
            {
                var problems = new List<string>();
                IReadOnlyList<BandwidthRecord> stored = [];
                KvStoreCliOptions.RunStore(kv.Parse(parse), Open, async (store, ct) =>
                {
                    stored = await store.ReadAsync(problems, ct);
                    return 0;
                });
                var limits = BandwidthRecords.Limits(stored, (record, problem) => problems.Add($"{record.Name}: {problem}"));
                foreach (string problem in problems)
                {
                    error.WriteLine($"warning: stored {problem}");
                }
                rows = endpoints is not null
                    ? BandwidthListing.Entries(endpoints, cidrs.Count == 0 ? null : cidrs, limits)
                    : BandwidthListing.Stored(limits);
            }
            var output = parse.InvocationConfiguration.Output;
            output.Write(parse.GetValue(jsonOpt) ? BandwidthListing.ToJson(rows) + Environment.NewLine : BandwidthListing.ToText(rows));
            return 0;
        });
        return cmd;
    }
}
