namespace Gateway.Node.Tests.Replay;

public sealed class ReplayFixtureTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "gw-replay-fx-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_tmp)) Directory.Delete(_tmp, recursive: true);
    }

    public static string FixtureDirectory
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln"))) return Path.Combine(dir.FullName, "fixtures", "replay");
            }
            throw new InvalidOperationException("repository root not found");
        }
    }

    [Fact]
    public void ReplayFixture_checked_in_files_match_the_generator_byte_for_byte()
    {
        if (Environment.GetEnvironmentVariable("GATEWAY_WRITE_FIXTURES") == "1")
        {
            ReplayFixtureGenerator.WriteAll(FixtureDirectory);
            File.WriteAllText(Path.Combine(FixtureDirectory, "endpoints.yaml"), ReplayFixtureGenerator.EndpointsYaml);
        }
        ReplayFixtureGenerator.WriteAll(_tmp);
        foreach (string name in ReplayFixtureGenerator.FileNames)
        {
            Assert.True(File.ReadAllBytes(Path.Combine(_tmp, name)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(FixtureDirectory, name))),
                $"{name} differs from the generator; regenerate with GATEWAY_WRITE_FIXTURES=1");
        }
        Assert.Equal(ReplayFixtureGenerator.EndpointsYaml, File.ReadAllText(Path.Combine(FixtureDirectory, "endpoints.yaml")));
    }

    [Fact]
    public void ReplayFixture_imix_has_the_advertised_mix()
    {
        var expected = ReplayFixtureGenerator.WriteAll(_tmp)[ReplayFixtureGenerator.Imix];
        Assert.True(expected.Flows >= 30, $"flows {expected.Flows}");
        Assert.True(expected.EgressDenied > 0 && expected.IngressDenied > 0);
        var capture = Gateway.Node.Replay.ReplayCapture.Load(Path.Combine(_tmp, ReplayFixtureGenerator.Imix));
        Assert.Equal(expected.Packets, capture.Count);
        int small = capture.Lengths.Count(l => l <= 64), medium = capture.Lengths.Count(l => l == 576), large = capture.Lengths.Count(l => l == 1500);
        Assert.True(small > medium && medium > large && large > 0, $"{small}:{medium}:{large}");
    }
}
