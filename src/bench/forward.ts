export async function runForwardBenchCommand(_o: { json?: boolean; duration: number; runs: number; sizes: string }): Promise<void> {
  throw new Error('not yet');
}
