using System.Text;

namespace Gateway.Policy.Tests;

/// <summary>Huge, deeply nested, aliased or odd YAML ends in one clear error, never a crash
/// (issue 14, item 5; the first case was found by scripts/fuzz.sh yaml).</summary>
public class YamlBoundsTests
{
    [Fact]
    public void AnEventSequenceTheRepresentationModelRefusesIsASyntaxError()
    {
        string text = Encoding.UTF8.GetString(Convert.FromBase64String("IyBGbWwpCm50U2VsZWN0b3I6CiAgICNtYXRjaExhYmVsczoKICA6IENpbGl1bU4gdHdvcmtQb2xpY3kKbWV0YWRhdGE6CiAgbmFtZTogIiIKc3BlYzoKICBlbmRwb2lhcH5WZXJzaW9uOiAiY2lsaXVtLmlvL3YyIgpraW5kICAgIHJvbGU6IGNyYQogIGVncmVzczoKICAtIHRvQ0lEUjoKICAgIC0gMTkyLjAuMkEwLzI0CiAgICB0b1BvenRzOgogICAgLSBwb3J0czoKICAgICAgLSBwL3J0OiAiODAiCiAgICAgICAgcP//gABjb2w6IFRDUA=="));
        var e = Assert.Throws<PolicyLoadException>(() => PolicyLoader.Parse(text, "fuzz.yaml"));
        Assert.Contains("YAML syntax error", e.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void NestingDeeperThanTheBoundIsRefusedBeforeAnythingRecurses(bool endpoints)
    {
        // 200,000 levels would overflow the stack of a recursive reader (uncatchable).
        string text = "spec: " + new string('[', 200_000) + new string(']', 200_000) + "\n";
        var e = Assert.Throws<PolicyLoadException>(() => Load(text, endpoints));
        Assert.Contains("nesting deeper than 64", e.Message);
        // 30 levels are fine for the reader (the loader then judges the content).
        string shallow = "spec: " + new string('[', 30) + new string(']', 30) + "\n";
        var other = Record.Exception(() => Load(shallow, endpoints));
        Assert.True(other is null or PolicyLoadException, other?.ToString());
        Assert.DoesNotContain("nesting", other?.Message ?? "");
    }

    [Fact]
    public void AliasesAreRefused()
    {
        const string laughs = """
            a: &a [x, x, x, x, x, x, x, x, x, x]
            b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
            c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
            """;
        var e = Assert.Throws<PolicyLoadException>(() => PolicyLoader.Parse(laughs, "laughs.yaml"));
        Assert.Contains("aliases (*a) are not supported", e.Message);
        Assert.Contains("laughs.yaml", e.Message);
    }

    [Fact]
    public void AHugeFileIsRefusedWithItsSize()
    {
        string text = "# " + new string('x', YNode.MaxTextLength) + "\n";
        var e = Assert.Throws<PolicyLoadException>(() => EndpointFile.Parse(text, "huge.yaml", new IdentityAllocator()));
        Assert.Contains("larger than 16 MiB", e.Message);
    }

    [Fact]
    public void AHugeFileOnDiskIsRefusedBeforeItIsRead()
    {
        string path = Path.Combine(Path.GetTempPath(), $"gw-huge-{Environment.ProcessId}-{Guid.NewGuid():N}.yaml");
        try
        {
            using (var f = File.Create(path))
            {
                f.SetLength(YNode.MaxTextLength + 1L); // sparse: nothing is written
            }
            Assert.Contains("larger than 16 MiB", Assert.Throws<PolicyLoadException>(() => PolicyLoader.Load(path)).Message);
            Assert.Contains("larger than 16 MiB", Assert.Throws<PolicyLoadException>(() => EndpointFile.Load(path, new IdentityAllocator())).Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static void Load(string text, bool endpoints)
    {
        if (endpoints)
        {
            EndpointFile.Parse(text, "e.yaml", new IdentityAllocator());
        }
        else
        {
            PolicyLoader.Parse(text, "p.yaml");
        }
    }
}
