// A Gateway node hosted in a Microsoft.Extensions.Hosting generic host. AddSystemd() makes the
// host a proper systemd service when systemd starts it (Type=notify: READY=1 once every hosted
// service, so the node, is up; STOPPING=1 on SIGTERM; logs in journald's format); elsewhere the
// host runs as a console program that Ctrl+C or SIGTERM stops. The node runs as a hosted service
// (WireGuardNodeService) beside whatever else the program hosts.
//
//   dotnet run -- /etc/wireguard/wg0.conf          the kernel TUN device and a UDP socket (root)
//   dotnet run -- wg0.conf --in-memory             in-memory devices: no root, nothing on the wire
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

if (args.Length is < 1 or > 2 || (args.Length == 2 && args[1] != "--in-memory"))
{
    Console.Error.WriteLine("usage: HostedNode CONFIG [--in-memory]");
    return 2;
}
string configPath = args[0];
bool inMemory = args.Length == 2;
string name = Path.GetFileNameWithoutExtension(configPath);

WgQuickConfig config;
try
{
    config = WgQuickConfig.Load(configPath);
}
catch (Exception e) when (e is ConfigException or IOException)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
using var _ = config;

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddSystemd();
builder.Services.AddSingleton(services => new WireGuardNodeService(() => new WireGuardNodeOptions
{
    InterfaceName = name,
    Config = config,
    Tun = inMemory ? new MemoryTunDevice(name) : null,
    Bind = inMemory ? new MemoryNetwork().Bind(new IpEndpoint(IpAddress.Parse("192.0.2.1"), config.Interface.ListenPort ?? 51820)) : null,
    UapiHandler = null,                  // no UAPI socket in this sample
    // No metrics exporter: the meters still publish (dotnet-counters monitor --counters Gateway.Node -p PID).
}, services.GetRequiredService<IHostApplicationLifetime>()));
builder.Services.AddHostedService(services => services.GetRequiredService<WireGuardNodeService>());

using var host = builder.Build();
var service = host.Services.GetRequiredService<WireGuardNodeService>();
host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted.Register(() =>
    Console.WriteLine($"node {service.Node!.InterfaceName} up: {service.Node.Engine.PeerCount} peer(s), meters {string.Join(", ", service.Node.Meters.MeterNames)}"));
await host.RunAsync();
Console.WriteLine(service.NodeFailed ? "node failed" : "node stopped");
return service.NodeFailed ? 1 : 0;
