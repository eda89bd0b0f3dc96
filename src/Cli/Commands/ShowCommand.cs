using System.CommandLine;
using Gateway.Node.Uapi;

namespace Gateway.Cli.Commands;

/// <summary>`gateway show [INTERFACE]`: what `wg show` prints, read over the UAPI socket.</summary>
internal static class ShowCommand
{
    public static Command Create()
    {
        var name = new Argument<string?>("interface")
        {
            Description = "Interface to show; all interfaces with a UAPI socket when omitted.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var dir = new Option<string>("--uapi-dir")
        {
            Description = "Folder of the UAPI sockets.",
            DefaultValueFactory = _ => UapiSocketServer.DefaultDirectory,
        };
        var command = new Command("show", "Show interfaces, peers, handshakes and transfer, like `wg show` (works against gateway and wireguard-go).")
        {
            name,
            dir,
        };
        command.SetAction(parse =>
        {
            string directory = parse.GetValue(dir)!;
            string? only = parse.GetValue(name);
            var interfaces = only is null ? UapiClient.ListInterfaces(directory) : [only];
            if (interfaces.Count == 0)
            {
                parse.InvocationConfiguration.Output.WriteLine($"no interfaces (no UAPI sockets in {directory})");
                return 0;
            }
            bool first = true;
            foreach (var iface in interfaces)
            {
                string reply;
                try
                {
                    reply = UapiClient.Exchange(iface, "get=1", directory);
                }
                catch (IOException e)
                {
                    throw new CliException(e.Message, 1);
                }
                var device = UapiDevice.Parse(reply);
                if (device.Errno != 0)
                {
                    throw new CliException($"interface '{iface}' answered errno={device.Errno}", 1);
                }
                if (!first)
                {
                    parse.InvocationConfiguration.Output.WriteLine();
                }
                first = false;
                parse.InvocationConfiguration.Output.Write(device.Render(iface, DateTimeOffset.UtcNow));
            }
            return 0;
        });
        return command;
    }
}
