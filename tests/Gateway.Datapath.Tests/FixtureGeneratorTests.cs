namespace Gateway.Datapath.Tests;

public class FixtureGeneratorTests
{
    [Fact]
    public void CheckedInSyntheticCapturesAreExactlyWhatTheGeneratorWrites()
    {
        string dir = Path.Combine(Path.GetTempPath(), "gw-fixtures-" + Guid.NewGuid().ToString("N"));
        try
        {
            CaptureFixtureGenerator.WriteAll(dir);
            if (Environment.GetEnvironmentVariable("GATEWAY_WRITE_FIXTURES") == "1")
            {
                CaptureFixtureGenerator.WriteAll(RepoPaths.Captures);
            }
            foreach (string name in CaptureFixtureGenerator.FileNames)
            {
                byte[] generated = File.ReadAllBytes(Path.Combine(dir, name));
                byte[] checkedIn = File.ReadAllBytes(Path.Combine(RepoPaths.Captures, name));
                Assert.True(generated.AsSpan().SequenceEqual(checkedIn), $"{name} differs from the generator's output");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
