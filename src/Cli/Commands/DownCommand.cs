using System.CommandLine;
using Gateway.Node.Daemon;
using Gateway.Node.Link;
using Gateway.Node.Uapi;

namespace Gateway.Cli.Commands;

/// <summary>`gateway down IFACE`: stop the interface's daemon and remove strict mode's routes.</summary>
internal static class DownCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("interface") { Description = "The interface `gateway up` created." };
        var uapiDir = new Option<string>("--uapi-dir")
        {
            Description = "Folder of the UAPI sockets (the running daemon is found through its socket).",
            DefaultValueFactory = _ => UapiSocketServer.DefaultDirectory,
        };
        var stateDir = new Option<string>("--state-dir")
        {
            Description = "Folder of the strict-mode state files (IFACE.strict).",
            DefaultValueFactory = _ => StrictRoutes.DefaultDirectory,
        };
        var command = new Command("down",
            "Take an interface down on purpose: stop the `gateway up` serving it (SIGTERM, found through its " +
            "UAPI socket) and remove the strict-mode `prohibit` routes it installed for the cluster CIDRs. " +
            "Stopping the daemon any other way (SIGTERM, a crash) keeps those routes, so pods cannot send " +
            "plaintext while it restarts. Also cleans up after a crashed daemon.")
        {
            name, uapiDir, stateDir,
        };
        command.SetAction(parse =>
        {
            string iface = parse.GetValue(name)!;
            TeardownResult result;
            try
            {
                result = InterfaceTeardown.Run(iface, parse.GetValue(uapiDir)!, parse.GetValue(stateDir));
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message.Split(" (Parameter")[0], 2);
            }
            catch (Exception e) when (e is TeardownException or LinkException or IOException or UnauthorizedAccessException)
            {
                throw new CliException(e.Message, 1);
            }
            var output = parse.InvocationConfiguration.Output;
            output.WriteLine(result.StoppedProcessId is int pid ? $"{iface}: stopped gateway (pid {pid})" : $"{iface}: no gateway running");
            output.WriteLine(result.RemovedRoutes.Count == 0
                ? $"{iface}: no strict-mode routes"
                : $"{iface}: removed prohibit routes for {string.Join(", ", result.RemovedRoutes)}");
            return 0;
        });
        return command;
    }
}
