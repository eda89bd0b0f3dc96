namespace Gateway.Policy.Tests;

/// <summary>Identities chosen by the cluster store (etcd) rather than by the local allocator.</summary>
public class ClusterIdentityTests
{
    private static LabelSet Labels(params string[] labels) => LabelSet.From(labels.Select(l => Label.Parse(l, LabelSources.K8s)));

    [Fact]
    public void AnAssignedNumberIsWhatAllocateReturnsForThoseLabels()
    {
        var allocator = new IdentityAllocator();
        var web = Labels("app=web", "io.kubernetes.pod.namespace=default");
        Assert.Equal(4711u, allocator.Assign(web, 4711).Id);
        Assert.Equal(4711u, allocator.Allocate(web).Id);
        Assert.True(allocator.TryGet(4711, out var identity));
        Assert.Equal(web, identity.Labels);
        Assert.Equal(IdentityKind.Endpoint, identity.Kind);
    }

    [Fact]
    public void ANumberTheClusterGaveToOtherLabelsReplacesTheOldBinding()
    {
        var allocator = new IdentityAllocator();
        var a = Labels("app=a");
        var b = Labels("app=b");
        allocator.Assign(a, 300);
        allocator.Assign(b, 300);
        Assert.True(allocator.TryGet(300, out var identity));
        Assert.Equal(b, identity.Labels);
        // a's labels are unbound again; moving them to another number keeps 300 for b.
        Assert.Equal(301u, allocator.Assign(a, 301).Id);
        Assert.True(allocator.TryGet(300, out identity));
        Assert.Equal(b, identity.Labels);
    }

    [Fact]
    public void ReservedNumbersAndLabelsCannotBeAssigned()
    {
        var allocator = new IdentityAllocator();
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Assign(Labels("app=a"), 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Assign(Labels("app=a"), 1u << 24));
        var host = LabelSet.Of(new Label(LabelSources.Reserved, "host", ""));
        Assert.Throws<ArgumentException>(() => allocator.Assign(host, 400));
    }

    [Theory]
    [InlineData("k8s:app=web;k8s:io.kubernetes.pod.namespace=default", true)]
    [InlineData("k8s:app=web;k8s:io.kubernetes.pod.namespace=default;", true)]
    [InlineData("reserved:host", true)]
    [InlineData("", false)]
    [InlineData("app=web", false)]
    [InlineData("k8s:app=web;;", false)]
    [InlineData("k8s:", false)]
    [InlineData("k8s:app=a;k8s:app=b", false)]
    public void CanonicalLabelStringsRoundTrip(string text, bool valid)
    {
        Assert.Equal(valid, LabelSet.TryParseCanonical(text, out var labels));
        if (valid)
        {
            Assert.Equal(text.TrimEnd(';'), labels.Canonical);
        }
    }
}
