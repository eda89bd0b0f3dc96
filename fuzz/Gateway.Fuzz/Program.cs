using SharpFuzz;

namespace Gateway.Fuzz;

/// <summary>
/// <c>Gateway.Fuzz TARGET</c>: the AFL fork server loop for one target (scripts/fuzz.sh runs it
/// under afl-fuzz). <c>Gateway.Fuzz TARGET FILE...</c>: runs the given inputs once each (to
/// replay a crash or a corpus without afl-fuzz); exit 1 when one of them throws.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0 || !Targets.Names.Contains(args[0]))
        {
            Console.Error.WriteLine($"usage: Gateway.Fuzz TARGET [FILE...]   (TARGET: {string.Join(", ", Targets.Names)})");
            return 2;
        }
        string target = args[0];
        if (args.Length > 1)
        {
            int failed = 0;
            foreach (string file in args.Skip(1))
            {
                try
                {
                    Targets.Run(target, File.ReadAllBytes(file));
                }
                catch (Exception e)
                {
                    failed++;
                    Console.Error.WriteLine($"{file}: {e}");
                }
            }
            return failed == 0 ? 0 : 1;
        }
        // afl-fuzz hides the target's output; scripts/fuzz.sh names a file for what escaped.
        string? crashLog = Environment.GetEnvironmentVariable("GATEWAY_FUZZ_CRASH_LOG");
        Fuzzer.Run(stream =>
        {
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            try
            {
                Targets.Run(target, memory.GetBuffer().AsSpan(0, (int)memory.Length));
            }
            catch (Exception e) when (crashLog is not null)
            {
                File.AppendAllText(crashLog, $"--- {Convert.ToHexString(memory.GetBuffer(), 0, (int)Math.Min(memory.Length, 64))}\n{e}\n");
                throw;
            }
        });
        return 0;
    }
}
