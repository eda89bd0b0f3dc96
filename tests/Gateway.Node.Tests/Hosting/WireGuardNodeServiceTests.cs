using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Hosting;
using Microsoft.Extensions.Hosting;

namespace Gateway.Node.Tests.Hosting;

public class WireGuardNodeServiceTests
{
    private sealed class Lifetime : IHostApplicationLifetime
    {
        public int StopRequests;
        public CancellationToken ApplicationStarted => CancellationToken.None;
        public CancellationToken ApplicationStopping => CancellationToken.None;
        public CancellationToken ApplicationStopped => CancellationToken.None;
        public void StopApplication() => Interlocked.Increment(ref StopRequests);
    }

    [Fact]
    public async Task TheHostStartsAndStopsTheNodeAndAStopRequestedByTheHostIsNotAFailure()
    {
        using var key = WireGuardKey.GeneratePrivate();
        string text = $"[Interface]\nPrivateKey = {key.ToBase64()}\nListenPort = 51820\n";
        using var config = WgQuickConfig.Parse(text, "/tmp/svc0.conf");
        var tun = new MemoryTunDevice("svc0");
        var lifetime = new Lifetime();
        int builds = 0;
        await using var service = new WireGuardNodeService(() =>
        {
            builds++;
            return new WireGuardNodeOptions
            {
                InterfaceName = "svc0",
                Config = config,
                Tun = tun,
                Bind = new MemoryNetwork().Bind(new IpEndpoint(IpAddress.Parse("192.0.2.9"), 51820)),
                Log = new NodeLog(TextWriter.Null),
                TimerThread = false,
            };
        }, lifetime);
        Assert.Null(service.Node);
        Assert.Equal(0, builds); // options are built when the host starts, not before

        await service.StartAsync(CancellationToken.None);
        Assert.NotNull(service.Node);
        Assert.Equal("svc0", service.Node.InterfaceName);
        Assert.Equal(1, builds);
        Assert.Contains("Gateway.Node", service.Node.Meters.MeterNames);

        await service.StopAsync(CancellationToken.None);
        Assert.Null(service.Node);
        Assert.False(service.NodeFailed);
        Assert.Equal(0, lifetime.StopRequests);
        await service.StopAsync(CancellationToken.None); // idempotent
    }
}
