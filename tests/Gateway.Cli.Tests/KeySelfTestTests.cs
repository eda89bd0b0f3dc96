namespace Gateway.Cli.Tests;

[Collection(ConsoleInputCollection.Name)]
public class KeySelfTestTests
{
    [Fact]
    public void SelfTestPassesPrintsPublicKeyAndFiguresButNoSecret()
    {
        var (code, output, err) = KeyCommandTests.Run(null, "selftest");
        Assert.Equal("", err);
        Assert.Equal(0, code);
        Assert.Contains("public key", output);
        Assert.Contains("all checks passed", output);
        Assert.DoesNotContain("FAIL", output);
        Assert.Matches(@"BLAKE2s-256, 8 KiB messages:\s+\d+ MB/s\s+\(\d+ MB/s per CPU-second\)", output);
        Assert.Matches(@"ChaCha20-Poly1305 seal, 1420 B packets:\s+\d+ MB/s", output);
        // Exactly one base64 key appears (the public one): private and preshared keys are never printed.
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(output, "[A-Za-z0-9+/]{43}="));
    }
}
