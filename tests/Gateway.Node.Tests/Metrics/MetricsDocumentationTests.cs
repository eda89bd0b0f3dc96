using System.Text.RegularExpressions;
using Gateway.Node.Tests.Daemon;

namespace Gateway.Node.Tests.Metrics;

/// <summary>
/// The metric names are an interface (dashboards and alerts use them): a scrape of a running node
/// must match the table in docs/metrics.md, name by name and type by type.
/// </summary>
public partial class MetricsDocumentationTests
{
    private sealed record Row(string Name, string Type, string Meter, string When);

    [GeneratedRegex(@"^\| `(gateway_[a-z0-9_]+)` \| (counter|gauge) \| (Gateway\.[A-Za-z]+) \| [^|]+ \| ([^|]+?) \|", RegexOptions.Multiline)]
    private static partial Regex TableRow();

    [GeneratedRegex(@"^# TYPE (\S+) (\S+)$", RegexOptions.Multiline)]
    private static partial Regex TypeLine();

    private static List<Row> DocumentedRows()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
        {
            dir = dir.Parent;
        }
        Assert.NotNull(dir);
        string text = File.ReadAllText(Path.Combine(dir.FullName, "docs", "metrics.md"));
        var rows = TableRow().Matches(text).Select(m => new Row(m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value, m.Groups[4].Value)).ToList();
        Assert.True(rows.Count >= 10, $"docs/metrics.md: only {rows.Count} table rows found");
        return rows;
    }

    [Fact]
    public async Task AScrapeOfARunningOverlayNodeMatchesTheDocumentedList()
    {
        var documented = DocumentedRows();
        await using var nodes = new MemoryNodes(overlay: true);
        nodes.Handshake();
        using var endpoint = PrometheusEndpointTests.StartOnFreePort(nodes.A.Meters);
        using var http = new HttpClient();
        string scrape = await http.GetStringAsync(endpoint.Url);
        var served = TypeLine().Matches(scrape).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);

        foreach (var (name, type) in served)
        {
            var row = documented.SingleOrDefault(r => r.Name == name);
            Assert.True(row is not null, $"{name} is served but not in the table of docs/metrics.md");
            Assert.True(row.Type == type, $"{name} is served as a {type}, documented as a {row.Type}");
        }
        // An in-memory overlay node has every series except those of a kernel UDP socket and of cluster mode.
        foreach (var row in documented.Where(r => r.When is "always" or "overlay"))
        {
            Assert.True(served.ContainsKey(row.Name), $"{row.Name} is documented ({row.When}) but not served");
        }
        var meterOf = nodes.A.Meters.MeterNames;
        foreach (var row in documented.Where(r => served.ContainsKey(r.Name)))
        {
            Assert.Contains(row.Meter, meterOf);
        }
        Assert.Contains("gateway_handshakes_total{interface=\"" + nodes.A.InterfaceName + "\",type=\"response\"} 1", scrape);
    }

    [Fact]
    public void EveryDocumentedMeterIsOneTheNodeNames()
    {
        var meters = DocumentedRows().Select(r => r.Meter).Distinct().ToList();
        Assert.All(meters, m => Assert.StartsWith(Gateway.Node.Metrics.GatewayMeters.MeterPrefix, m));
        Assert.Contains("Gateway.Node", meters);
        Assert.Contains("Gateway.Policy", meters);
        Assert.Contains("Gateway.Cluster", meters);
    }
}
