using System.CommandLine;
using Gateway.Cli.Commands;
using Gateway.Cluster;
using Gateway.Policy;

namespace Gateway.Cli;

/// <summary>
/// `gateway policy trace` and `gateway policy check`: load Cilium / Kubernetes policies, show what
/// the compiled maps decide. Bad input (unreadable or invalid files, unknown endpoints) exits 2
/// with one line naming file, document and field; a DENIED verdict is a successful answer (0).
/// `gateway policy apply` / `delete` store policies cluster-wide in etcd: a file that does not
/// load or compile is refused (exit 2) before anything is stored; all documents of one apply
/// go in one etcd transaction; an unreachable etcd exits 1.
/// </summary>
internal static class PolicyCommand
{
    public static Command Create()
    {
        var policy = new Command("policy", "Check CiliumNetworkPolicy / NetworkPolicy files, trace verdicts, store them in the cluster.");
        policy.Subcommands.Add(CreateTrace());
        policy.Subcommands.Add(CreateCheck());
        policy.Subcommands.Add(CreateApply());
        policy.Subcommands.Add(CreateDelete());
        return policy;
    }

    private static Command CreateApply()
    {
        var filesArg = new Argument<string[]>("FILE") { Description = "Policy YAML files or folders (multi-document files allowed).", Arity = ArgumentArity.OneOrMore };
        var kv = new KvStoreCliOptions();
        var cmd = new Command("apply", "Store policies cluster-wide in etcd; every node applies them. All or nothing.") { filesArg };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            var options = kv.Parse(parse);
            IReadOnlyList<PolicyRecord> records;
            try
            {
                records = PolicyRecords.Load(parse.GetValue(filesArg)!);
            }
            catch (PolicyLoadException e)
            {
                throw new CliException(e.Message);
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }
            if (records.Count == 0)
            {
                throw new CliException("no policy documents in the given files");
            }
            if (records.Count > ClusterLimits.MaxPoliciesPerApply)
            {
                throw new CliException($"{records.Count} policies do not fit one etcd transaction (at most {ClusterLimits.MaxPoliciesPerApply}); apply them in smaller sets");
            }
            var output = parse.InvocationConfiguration.Output;
            return kv.Run(parse, async (client, ct) =>
            {
                await client.PutPoliciesAsync(records, ct);
                foreach (var r in records)
                {
                    output.WriteLine($"stored {r.Name}");
                }
                return 0;
            }, options);
        });
        return cmd;
    }

    private static Command CreateDelete()
    {
        var nameArg = new Argument<string>("NAME") { Description = "Stored policy name as `policy apply` and `cluster status` print it, e.g. CiliumNetworkPolicy/default/allow-web." };
        var kv = new KvStoreCliOptions();
        var cmd = new Command("delete", "Delete a policy stored in etcd; every node drops it.") { nameArg };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            string name = parse.GetValue(nameArg)!;
            var output = parse.InvocationConfiguration.Output;
            return kv.Run(parse, async (client, ct) =>
            {
                if (!await client.DeletePolicyAsync(name, ct))
                {
                    throw new CliException($"no stored policy named {name} (`gateway cluster status` lists them)", exitCode: 1);
                }
                output.WriteLine($"deleted {name}");
                return 0;
            });
        });
        return cmd;
    }

    private static Command CreateTrace()
    {
        var policyOpt = new Option<string>("--policy") { Description = "Policy YAML file or folder of them.", Required = true };
        var endpointsOpt = new Option<string>("--endpoints") { Description = "Endpoints YAML file (name, namespace, ips, labels).", Required = true };
        var fromOpt = new Option<string>("--from") { Description = "Source: endpoint name, label list k=v,k2=v2, or IP address.", Required = true };
        var toOpt = new Option<string>("--to") { Description = "Destination: endpoint name, label list k=v,k2=v2, or IP address.", Required = true };
        var dportOpt = new Option<string>("--dport") { Description = "Destination port and protocol, e.g. 80/TCP, 53/UDP, 8/ICMP (ICMP type).", Required = true };
        var jsonOpt = new Option<bool>("--json") { Description = "Print the trace as JSON." };
        var cmd = new Command("trace", "Trace a packet through the source's egress and the destination's ingress policy.")
        {
            policyOpt, endpointsOpt, fromOpt, toOpt, dportOpt, jsonOpt,
        };
        cmd.SetAction(parse =>
        {
            string dport = parse.GetValue(dportOpt)!;
            if (!PolicyTracer.TryParsePort(dport, out byte proto, out ushort port, out string? portError))
            {
                throw new CliException($"--dport: {portError}");
            }
            var (policies, endpoints) = Load(parse.GetValue(policyOpt)!, parse.GetValue(endpointsOpt));
            TraceResult result;
            try
            {
                result = PolicyTracer.Trace(policies, endpoints!, parse.GetValue(fromOpt)!, parse.GetValue(toOpt)!, proto, port);
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message.Split(" (Parameter")[0]);
            }
            var output = parse.InvocationConfiguration.Output;
            output.Write(parse.GetValue(jsonOpt) ? result.ToJson() + Environment.NewLine : result.ToText());
            return 0;
        });
        return cmd;
    }

    private static Command CreateCheck()
    {
        var pathArg = new Argument<string>("PATH") { Description = "Policy YAML file or folder of them." };
        var endpointsOpt = new Option<string>("--endpoints") { Description = "Endpoints YAML file: also print per-endpoint map sizes." };
        var cmd = new Command("check", "Validate policy files; with --endpoints, print each endpoint's compiled map sizes.")
        {
            pathArg, endpointsOpt,
        };
        cmd.SetAction(parse =>
        {
            var (policies, endpoints) = Load(parse.GetValue(pathArg)!, parse.GetValue(endpointsOpt));
            var output = parse.InvocationConfiguration.Output;
            int rules = policies.Rules.Count();
            output.WriteLine($"OK: {policies.Documents.Count} policies, {rules} rules in {policies.Files.Count} file(s)");
            foreach (var doc in policies.Documents)
            {
                string name = doc.Namespace is null ? doc.Name : $"{doc.Namespace}/{doc.Name}";
                output.WriteLine($"  {doc.Kind} {name} ({doc.File}, document {doc.Document}): {doc.Specs.Sum(s => s.Rules.Count)} rules");
            }
            if (endpoints is null)
            {
                return 0;
            }
            var snapshot = PolicyCompiler.Compile(policies, endpoints);
            output.WriteLine($"Endpoints: {endpoints.All.Count}, identities: {snapshot.Identities.Count()}, ipcache prefixes: {snapshot.IpCache.Count}");
            foreach (var ep in endpoints.All.Where(e => e.IsWorkload))
            {
                var p = snapshot.GetPolicy(ep.Identity.Id);
                output.WriteLine($"  {ep.QualifiedName} (identity {ep.Identity.Id}): ingress {Describe(p?.Ingress)}, egress {Describe(p?.Egress)}");
            }
            return 0;
        });
        return cmd;
    }

    private static string Describe(PolicyMap? map) =>
        map is null || (!map.Enforced && map.EntryCount == 0)
            ? "not enforced"
            : $"{map.EntryCount} entries over {map.IdentityCount} identities{(map.Enforced ? " (default deny)" : "")}";

    private static (PolicySet Policies, EndpointTable? Endpoints) Load(string policyPath, string? endpointsPath)
    {
        try
        {
            var identities = new IdentityAllocator();
            var endpoints = endpointsPath is null ? null : EndpointFile.Load(endpointsPath, identities);
            var policies = PolicyLoader.Load(policyPath);
            return (policies, endpoints);
        }
        catch (PolicyLoadException e)
        {
            throw new CliException(e.Message);
        }
        catch (IOException e)
        {
            throw new CliException(e.Message);
        }
    }
}
