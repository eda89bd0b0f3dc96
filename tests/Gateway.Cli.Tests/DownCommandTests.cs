namespace Gateway.Cli.Tests;

/// <summary>`gateway down` on bad or absent input: one clear line, never a stack trace.</summary>
public class DownCommandTests
{
    [Theory]
    [InlineData("a/b")]
    [InlineData("much-too-long-interface-name")]
    [InlineData("..")]
    public void A_name_that_is_no_interface_name_is_a_usage_error(string name)
    {
        var (code, _, err) = CliHarness.Run("down", name);
        Assert.Equal(2, code);
        Assert.Contains("is not an interface name", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void An_interface_with_nothing_to_take_down_exits_1_with_one_line()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"gw-down-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var (code, _, err) = CliHarness.Run("down", "gwnothing0", "--uapi-dir", dir, "--state-dir", dir);
            Assert.Equal(1, code);
            Assert.Equal("gateway: gwnothing0: no running gateway and no strict-mode routes to remove", err.Trim());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Help_explains_what_down_keeps_and_removes()
    {
        var (code, output, _) = CliHarness.Run("down", "--help");
        Assert.Equal(0, code);
        Assert.Contains("prohibit", output);
        Assert.Contains("keeps those routes", output);
    }
}
