using System.Diagnostics.Metrics;
using System.Net;
using Gateway.Hosting;
using Gateway.Node.Metrics;

namespace Gateway.Node.Tests.Metrics;

public class PrometheusEndpointTests
{
    /// <summary>Starts an endpoint on a free loopback port (Kestrel asks the kernel for one).</summary>
    internal static PrometheusEndpoint StartOnFreePort(GatewayMeters meters, PrometheusEndpointLimits? limits = null) =>
        PrometheusEndpoint.Start(new IPEndPoint(IPAddress.Loopback, 0), meters, limits);

    [Fact]
    public async Task ServesTheNodesInstrumentsUnderTheirOwnNames()
    {
        long received = 1234;
        using var meters = new GatewayMeters(() => "wg7");
        meters.Counter(GatewayMeters.NodeArea, "gateway_peer_rx_bytes_total", "Bytes received from the peer.",
            () => [meters.Sample(Interlocked.Read(ref received), ("peer", "abc\"d"))]);
        meters.Gauge(GatewayMeters.PolicyArea, "gateway_conntrack_entries", "Entries.", () => [meters.Sample(3.0)]);
        using var endpoint = StartOnFreePort(meters);
        using var http = new HttpClient();

        var response = await http.GetAsync(endpoint.Url);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType);
        string body = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE gateway_peer_rx_bytes_total counter\n", body);
        Assert.Contains("gateway_peer_rx_bytes_total{interface=\"wg7\",peer=\"abc\\\"d\"} 1234\n", body);
        Assert.Contains("# TYPE gateway_conntrack_entries gauge\n", body);
        Assert.Contains("gateway_conntrack_entries{interface=\"wg7\"} 3\n", body);
        Assert.DoesNotContain("target_info", body);
        Assert.DoesNotContain("otel_scope", body);

        // Every scrape reads the counters now (no cached answer).
        Interlocked.Exchange(ref received, 5678);
        Assert.Contains("peer=\"abc\\\"d\"} 5678\n", await http.GetStringAsync(endpoint.Url));

        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri(endpoint.Url, "/other"))).StatusCode);
    }

    [Fact]
    public async Task TwoNodesInOneProcessServeOnlyTheirOwnSeries()
    {
        using var a = new GatewayMeters(() => "a0");
        using var b = new GatewayMeters(() => "b0");
        foreach (var meters in new[] { a, b })
        {
            meters.Counter(GatewayMeters.NodeArea, "gateway_forward_count_total", "Forwards.", () => [meters.Sample(1L, ("direction", "egress"))]);
        }
        using var endpoint = StartOnFreePort(a);
        using var http = new HttpClient();
        string body = await http.GetStringAsync(endpoint.Url);
        Assert.Contains("interface=\"a0\"", body);
        Assert.DoesNotContain("interface=\"b0\"", body);
    }

    [Fact]
    public void APortInUseIsAClearError()
    {
        using var meters = new GatewayMeters(() => "x");
        using var first = StartOnFreePort(meters);
        var e = Assert.Throws<IOException>(() => PrometheusEndpoint.Start(first.Endpoint, meters));
        Assert.Contains("cannot listen for metrics", e.Message);
    }

    [Fact]
    public void NamesThatAnExporterWouldChangeAreRefused()
    {
        using var meters = new GatewayMeters(() => "x");
        Assert.Throws<ArgumentException>(() => meters.Counter("Node", "gateway_bytes", "no _total", () => []));
        Assert.Throws<ArgumentException>(() => meters.Gauge("Node", "gateway_things_total", "a gauge with _total", () => []));
        Assert.Throws<ArgumentException>(() => meters.Counter("Node", "Gateway.Bytes_total", "not a Prometheus name", () => []));
    }

    [Fact]
    public void MetersAreNamedByAreaAndScopedToTheirNode()
    {
        using var meters = new GatewayMeters(() => "wg0");
        var counter = meters.Counter("Node", "gateway_example_total", "Example.", () => [meters.Sample(7L, ("kind", "a"))]);
        Assert.Equal("Gateway.Node", counter.Meter.Name);
        Assert.Same(meters, counter.Meter.Scope);
        Assert.Equal(["Gateway.Node"], meters.MeterNames);

        // What dotnet-counters and any other listener see: the instrument by meter name, with the interface label first.
        var seen = new List<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name.StartsWith(GatewayMeters.MeterPrefix, StringComparison.Ordinal) && ReferenceEquals(instrument.Meter.Scope, meters))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            seen.Add($"{instrument.Meter.Name}/{instrument.Name} {string.Join(",", tags.ToArray().Select(t => $"{t.Key}={t.Value}"))} {value}"));
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.Equal(["Gateway.Node/gateway_example_total interface=wg0,kind=a 7"], seen);
        Assert.Equal("gateway_example_total{interface=\"wg0\",kind=\"a\"} 7\n", meters.ReadAsText());
    }
}
