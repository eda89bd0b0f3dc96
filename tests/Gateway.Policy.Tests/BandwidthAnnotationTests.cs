namespace Gateway.Policy.Tests;

/// <summary>Kubernetes quantities as resource.ParseQuantity + Value() read them, and the endpoints
/// file's bandwidth annotations (malformed ones are reported with file and line and ignored).</summary>
public class BandwidthAnnotationTests
{
    [Theory]
    [InlineData("10M", 10_000_000L)]
    [InlineData("1G", 1_000_000_000L)]
    [InlineData("500k", 500_000L)]
    [InlineData("1Mi", 1_048_576L)]
    [InlineData("1Ki", 1024L)]
    [InlineData("1.5M", 1_500_000L)]
    [InlineData("1.5Gi", 1_610_612_736L)]
    [InlineData("12345", 12345L)]
    [InlineData("+7k", 7000L)]
    [InlineData("0.5", 1L)]           // Value() rounds up
    [InlineData("1500m", 2L)]         // 1.5 rounds up to 2
    [InlineData("1000m", 1L)]
    [InlineData("1e6", 1_000_000L)]
    [InlineData("1E6", 1_000_000L)]
    [InlineData("25e+5", 2_500_000L)]
    [InlineData("1e-3", 1L)]
    [InlineData(".5k", 500L)]
    [InlineData("5.k", 5000L)]
    [InlineData("1E", 1_000_000_000_000_000_000L)]
    [InlineData("100u", 1L)]
    [InlineData("3n", 1L)]
    [InlineData("-1k", -1000L)]
    [InlineData("-1500m", -2L)]       // away from zero
    public void QuantitiesReadAsKubernetesReadsThem(string text, long expected)
    {
        Assert.True(ResourceQuantity.TryParseValue(text, out long value, out string? problem), problem);
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("M")]
    [InlineData("10 M")]
    [InlineData(" 10M")]
    [InlineData("10M ")]
    [InlineData("10K")]      // upper-case K is not a suffix
    [InlineData("10Mb")]
    [InlineData("10mbit")]
    [InlineData("1e")]
    [InlineData("1e1.5")]
    [InlineData("1.2.3")]
    [InlineData(".")]
    [InlineData("+")]
    [InlineData("10MiB")]
    [InlineData("9E")]       // 9e18 fits; 10E does not
    [InlineData("10E")]
    public void MalformedQuantitiesAreRefusedWithAReason(string text)
    {
        if (text == "9E")
        {
            Assert.True(ResourceQuantity.TryParseValue(text, out long nine, out _));
            Assert.Equal(9_000_000_000_000_000_000L, nine);
            return;
        }
        Assert.False(ResourceQuantity.TryParseValue(text, out _, out string? problem));
        Assert.False(string.IsNullOrEmpty(problem));
    }

    [Theory]
    [InlineData("999", "unreasonably small")]
    [InlineData("2P", "unreasonably large")]
    [InlineData("-10M", "unreasonably small")]
    public void RatesOutsideTheKubeletsBoundsAreRefused(string text, string reason)
    {
        Assert.False(BandwidthAnnotations.TryParseRate(text, out _, out string? problem));
        Assert.Contains(reason, problem);
    }

    [Fact]
    public void EndpointsFileCarriesAnnotationsAndReportsMalformedOnesWithFileAndLine()
    {
        const string yaml = """
            endpoints:
              - name: slow
                ips: [10.0.0.1]
                labels: {app: slow}
                annotations:
                  kubernetes.io/egress-bandwidth: 10M
                  kubernetes.io/ingress-bandwidth: "1.5Mi"
                  example.com/other: anything
              - name: broken
                ips: [10.0.0.2]
                labels: {app: broken}
                annotations:
                  kubernetes.io/egress-bandwidth: 10 mbit
                  kubernetes.io/ingress-bandwidth: 5M
              - {name: plain, ips: [10.0.0.3], labels: {app: plain}}
            """;
        var table = EndpointFile.Parse(yaml, "eps.yaml", new IdentityAllocator());
        var slow = table.FindByName("slow")!;
        Assert.Equal(new BandwidthLimits(10_000_000, 1_572_864), slow.Bandwidth);
        Assert.Equal("anything", slow.Annotations["example.com/other"]);
        var broken = table.FindByName("broken")!;
        // The malformed egress value is ignored; the valid ingress value still applies.
        Assert.Equal(new BandwidthLimits(0, 5_000_000), broken.Bandwidth);
        Assert.False(table.FindByName("plain")!.Bandwidth.Any);
        string warning = Assert.Single(table.Warnings);
        Assert.Contains("eps.yaml", warning);
        Assert.Contains("(line 13)", warning);
        Assert.Contains("kubernetes.io/egress-bandwidth", warning);
        Assert.Contains("is not a quantity suffix", warning);
    }
}
