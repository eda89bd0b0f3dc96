using System.CommandLine;
using Gateway.Cli.Commands;
using Gateway.Cluster;
using Gateway.LoadBalancer;
using Gateway.Policy;

namespace Gateway.Cli;

/// <summary>
/// `gateway service list`: load Kubernetes Services and endpoints, compile the service maps
/// and print VIP:port -> backends. Bad input exits 2 with one line naming file, line and reason.
/// It reads the files, not a running daemon (the daemon loads them with `Services =` in [Overlay]).
/// </summary>
internal static class ServiceCommand
{
    public static Command Create()
    {
        var service = new Command("service", "Kubernetes ClusterIP services: list frontends and their backends; store them in etcd.");
        service.Subcommands.Add(CreateList());
        service.Subcommands.Add(CreateApply());
        service.Subcommands.Add(CreateDelete());
        return service;
    }

    private static Command CreateApply()
    {
        var filesArg = new Argument<string[]>("FILE") { Description = "Service YAML files or folders (Kubernetes v1 Service, type ClusterIP).", Arity = ArgumentArity.OneOrMore };
        var kv = new KvStoreCliOptions();
        var cmd = new Command("apply", "Store services cluster-wide in etcd; every node translates them. All or nothing.") { filesArg };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            var options = kv.Parse(parse);
            IReadOnlyList<ServiceRecord> records;
            try
            {
                records = ServiceRecords.Load(parse.GetValue(filesArg)!);
            }
            catch (ServiceLoadException e)
            {
                throw new CliException(e.Message);
            }
            if (records.Count == 0)
            {
                throw new CliException("no Service documents in the given files");
            }
            var output = parse.InvocationConfiguration.Output;
            return RunStore(options, async (store, ct) =>
            {
                await store.PutAsync(records, ct);
                foreach (var r in records)
                {
                    output.WriteLine($"stored service {r.Name}");
                }
                return 0;
            });
        });
        return cmd;
    }

    private static Command CreateDelete()
    {
        var nameArg = new Argument<string>("NAMESPACE/NAME") { Description = "The stored service, e.g. default/web." };
        var kv = new KvStoreCliOptions();
        var cmd = new Command("delete", "Delete a service stored in etcd; every node stops translating it.") { nameArg };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            string name = parse.GetValue(nameArg)!;
            if (!ServiceRecords.IsValidName(name))
            {
                throw new CliException($"'{name}' is not NAMESPACE/NAME (e.g. default/web)");
            }
            var options = kv.Parse(parse);
            var output = parse.InvocationConfiguration.Output;
            return RunStore(options, async (store, ct) =>
            {
                if (!await store.DeleteAsync(name, ct))
                {
                    throw new CliException($"no stored service named {name}", exitCode: 1);
                }
                output.WriteLine($"deleted service {name}");
                return 0;
            });
        });
        return cmd;
    }

    private static int RunStore(KvStoreOptions options, Func<ServiceStore, CancellationToken, Task<int>> action) =>
        KvStoreCliOptions.RunStore(options, o => ServiceStore.Open(o, _ => { }), action);

    private static Command CreateList()
    {
        var servicesOpt = new Option<string>("--services") { Description = "Service YAML file or folder of them (Kubernetes v1 Service, type ClusterIP).", Required = true };
        var endpointsOpt = new Option<string>("--endpoints") { Description = "Endpoints YAML file (name, namespace, ips, labels, ports).", Required = true };
        var algorithmOpt = new Option<string>("--algorithm") { Description = "Backend selection: maglev (default) or random." };
        var jsonOpt = new Option<bool>("--json") { Description = "Print the services and map sizes as JSON." };
        var cmd = new Command("list", "Print each service frontend (VIP:port/protocol) and the backends it translates to.")
        {
            servicesOpt, endpointsOpt, algorithmOpt, jsonOpt,
        };
        cmd.SetAction(parse =>
        {
            var table = Load(parse.GetValue(servicesOpt)!, parse.GetValue(endpointsOpt)!, new IdentityAllocator(), parse.GetValue(algorithmOpt));
            var output = parse.InvocationConfiguration.Output;
            output.Write(parse.GetValue(jsonOpt) ? ServiceListing.ToJson(table) + Environment.NewLine : ServiceListing.ToText(table));
            return 0;
        });
        return cmd;
    }

    /// <summary>Loads and compiles services against an endpoints file; any mistake is a one-line CliException.</summary>
    internal static ServiceTable Load(string servicesPath, string endpointsPath, IdentityAllocator identities, string? algorithm = null)
    {
        try
        {
            return Load(servicesPath, EndpointFile.Load(endpointsPath, identities), algorithm);
        }
        catch (PolicyLoadException e)
        {
            throw new CliException(e.Message);
        }
    }

    internal static ServiceTable Load(string servicesPath, EndpointTable endpoints, string? algorithm)
    {
        var options = new ServiceTableOptions
        {
            Algorithm = algorithm switch
            {
                null or "maglev" => BackendAlgorithm.Maglev,
                "random" => BackendAlgorithm.Random,
                _ => throw new CliException($"--algorithm: '{algorithm}' is not maglev or random"),
            },
        };
        try
        {
            return ServiceTable.Compile(ServiceLoader.Load(servicesPath), endpoints, options);
        }
        catch (ServiceLoadException e)
        {
            throw new CliException(e.Message);
        }
    }
}
