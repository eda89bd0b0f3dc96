using System.CommandLine;
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
        var service = new Command("service", "Kubernetes ClusterIP services: list frontends and their backends.");
        service.Subcommands.Add(CreateList());
        return service;
    }

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
